package botify.minicluster;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.DFSConfigKeys;
import org.apache.hadoop.minikdc.MiniKdc;
import org.apache.hadoop.security.UserGroupInformation;
import org.apache.hadoop.yarn.conf.YarnConfiguration;

/**
 * The realm of a Kerberos-secured HDFS ({@code botify.minicluster.kerberos=1}): Hadoop's MiniKdc in this JVM,
 * the HDFS service principals in {@code kdc/hdfs.keytab} and one client principal, {@code botify}, in
 * {@code kdc/botify.keytab}, and {@code kdc/krb5.conf} for clients outside this JVM (kinit, hdfs-native's
 * libgssapi, spark-submit). The servers' keys and the client's keys go into their configurations from here.
 */
final class Kerberos {

    /** The one host name every principal carries; the servers' addresses are 127.0.0.1, which it names. */
    static final String HOST = "localhost";
    static final String CLIENT = "botify";

    private final MiniKdc kdc;
    private final File serviceKeytab;
    private final File clientKeytab;
    private final File krb5Conf;

    private Kerberos(MiniKdc kdc, File dir) {
        this.kdc = kdc;
        this.serviceKeytab = new File(dir, "hdfs.keytab");
        this.clientKeytab = new File(dir, CLIENT + ".keytab");
        this.krb5Conf = new File(dir, "krb5.conf");
    }

    /** {@code ticketLifetimeSeconds} 0: MiniKdc's default (a day); tests of renewal ask for less. */
    static Kerberos start(File dir, int ticketLifetimeSeconds) throws Exception {
        if (!dir.mkdirs() && !dir.isDirectory()) {
            throw new IOException("cannot create " + dir);
        }
        Properties conf = MiniKdc.createConf();
        conf.setProperty(MiniKdc.KDC_BIND_ADDRESS, HOST);
        if (ticketLifetimeSeconds > 0) {
            conf.setProperty(MiniKdc.MAX_TICKET_LIFETIME, Integer.toString(ticketLifetimeSeconds));
        }
        MiniKdc kdc = new MiniKdc(conf, dir);
        // Sets java.security.krb5.conf for this JVM, before any server logs in from its keytab.
        kdc.start();
        Kerberos realm = new Kerberos(kdc, dir);
        kdc.createPrincipal(realm.serviceKeytab, "hdfs/" + HOST, "HTTP/" + HOST);
        kdc.createPrincipal(realm.clientKeytab, CLIENT);
        realm.writeClientKrb5Conf();
        return realm;
    }

    /**
     * MIT Kerberos (kinit, libgssapi) reads this, not the JVM: the KDC speaks TCP only (MiniKdc's default), and
     * host names are taken as written: reverse DNS of 127.0.0.1 may answer the container's own name, which no
     * principal here carries.
     */
    private void writeClientKrb5Conf() throws IOException {
        String realm = kdc.getRealm();
        String text = String.join("\n",
                "[libdefaults]",
                "    default_realm = " + realm,
                "    udp_preference_limit = 1",
                "    dns_lookup_kdc = false",
                "    dns_lookup_realm = false",
                "    dns_canonicalize_hostname = false",
                "    rdns = false",
                "    forwardable = true",
                "[realms]",
                "    " + realm + " = {",
                "        kdc = 127.0.0.1:" + kdc.getPort(),
                "    }",
                "[domain_realm]",
                "    " + HOST + " = " + realm,
                "");
        Files.writeString(krb5Conf.toPath(), text, StandardCharsets.UTF_8);
    }

    String principal(String name) {
        return name + "@" + kdc.getRealm();
    }

    /**
     * The ResourceManager and the NodeManagers log in as the one service principal the NameNode uses: a
     * Kerberos login is global to a JVM, and the ResourceManager shares its JVM with the NameNode and the
     * DataNodes (a production cluster gives each daemon and host a principal of its own: rm/host, nm/host).
     * Containers run as the NodeManager's user (DefaultContainerExecutor); the applications' HDFS access
     * goes by the delegation tokens spark-submit obtained from its keytab.
     */
    void secureYarn(Configuration conf) {
        String service = principal("hdfs/" + HOST);
        conf.set(YarnConfiguration.RM_PRINCIPAL, service);
        conf.set(YarnConfiguration.RM_KEYTAB, serviceKeytab.getPath());
        conf.set(YarnConfiguration.NM_PRINCIPAL, service);
        conf.set(YarnConfiguration.NM_KEYTAB, serviceKeytab.getPath());
    }

    /**
     * The NameNode and DataNodes log in from the service keytab; block tokens and SASL on the data transfer
     * protocol stand in for the privileged ports a production DataNode would bind as root.
     */
    void secureServers(Configuration conf) {
        client(conf);
        conf.setBoolean("hadoop.security.authorization", true);
        conf.set(DFSConfigKeys.DFS_NAMENODE_KEYTAB_FILE_KEY, serviceKeytab.getPath());
        conf.set(DFSConfigKeys.DFS_DATANODE_KEYTAB_FILE_KEY, serviceKeytab.getPath());
        conf.set(DFSConfigKeys.DFS_WEB_AUTHENTICATION_KERBEROS_PRINCIPAL_KEY, principal("HTTP/" + HOST));
        conf.set(DFSConfigKeys.DFS_WEB_AUTHENTICATION_KERBEROS_KEYTAB_KEY, serviceKeytab.getPath());
        conf.setBoolean(DFSConfigKeys.DFS_BLOCK_ACCESS_TOKEN_ENABLE_KEY, true);
        // A DataNode in secure mode refuses non-privileged ports over plain HTTP unless told this is a test;
        // its data transfer port still authenticates with SASL (dfs.data.transfer.protection).
        conf.setBoolean(DFSConfigKeys.IGNORE_SECURE_PORTS_FOR_TESTING_KEY, true);
        // UGI's mode is global to the JVM: set before the first server (or FileSystem) reads it.
        UserGroupInformation.setConfiguration(conf);
    }

    /** What a client's core-site.xml / hdfs-site.xml needs to talk to the secured HDFS. */
    void client(Configuration conf) {
        conf.set("hadoop.security.authentication", "kerberos");
        conf.set("hadoop.rpc.protection", "authentication");
        conf.set(DFSConfigKeys.DFS_NAMENODE_KERBEROS_PRINCIPAL_KEY, principal("hdfs/" + HOST));
        conf.set(DFSConfigKeys.DFS_DATANODE_KERBEROS_PRINCIPAL_KEY, principal("hdfs/" + HOST));
        conf.set(DFSConfigKeys.DFS_DATA_TRANSFER_PROTECTION_KEY, "authentication");
    }

    /** cluster.json's "kerberos". */
    Map<String, Object> describe() {
        Map<String, Object> info = new LinkedHashMap<>();
        info.put("krb5_conf", krb5Conf.getPath());
        info.put("keytab", clientKeytab.getPath());
        info.put("principal", principal(CLIENT));
        info.put("realm", kdc.getRealm());
        info.put("kdc", kdc.getHost() + ":" + kdc.getPort());
        info.put("service_keytab", serviceKeytab.getPath());
        info.put("service_principal", principal("hdfs/" + HOST));
        return info;
    }

    void stop() {
        kdc.stop();
    }
}
