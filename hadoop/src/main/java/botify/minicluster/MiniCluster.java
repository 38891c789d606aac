package botify.minicluster;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.DFSConfigKeys;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.MiniDFSNNTopology;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;

/**
 * HDFS and YARN on this host until stdin closes or the process gets SIGTERM.
 *
 * <p>Usage: {@code MiniCluster <dir> [overlay.properties]}. The overlay holds the YARN settings, as Spark's
 * suite passes its {@code newYarnConfig()} plus {@code extraConf}, and the topology as
 * {@code botify.minicluster.*} keys: {@code nodemanagers}, {@code datanodes}, {@code replication},
 * {@code ha} (1: two NameNodes behind a name service), {@code kerberos} (1: HDFS and YARN secured by Kerberos, with
 * a KDC of its own; see {@link Kerberos}) and {@code ticket_lifetime_s} (the KDC's longest ticket). Writes
 * the client configuration to {@code <dir>/conf} (core-site.xml, hdfs-site.xml, yarn-site.xml: a
 * HADOOP_CONF_DIR), then {@code <dir>/cluster.json} last, so
 * its presence means "ready" (the one readiness signal). Every server binds to 127.0.0.1. Admin commands
 * arrive on stdin (see {@link Admin}).
 */
public final class MiniCluster {

    private MiniCluster() {
    }

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Throwable failure) {
            // The servers' threads are not daemons: without an explicit exit a failed start would linger.
            failure.printStackTrace();
            System.exit(1);
        }
    }

    private static void run(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: MiniCluster <dir> [overlay.properties]");
            System.exit(2);
        }
        File dir = new File(args[0]).getAbsoluteFile();
        Properties overlay = new Properties();
        if (args.length > 1) {
            try (java.io.Reader in = Files.newBufferedReader(Path.of(args[1]), StandardCharsets.UTF_8)) {
                overlay.load(in);
            }
        }
        File confDir = new File(dir, "conf");
        if (!confDir.mkdirs() && !confDir.isDirectory()) {
            throw new IOException("cannot create " + confDir);
        }
        int nodeManagerCount = topology(overlay, "nodemanagers", 1);
        int dataNodeCount = topology(overlay, "datanodes", 1);
        int replication = topology(overlay, "replication", 1);
        boolean ha = topology(overlay, "ha", 0) == 1;
        boolean kerberos = topology(overlay, "kerberos", 0) == 1;
        int ticketLifetime = topology(overlay, "ticket_lifetime_s", 0);
        Kerberos realm = kerberos ? Kerberos.start(new File(dir, "kdc"), ticketLifetime) : null;

        Configuration hdfsConf = new Configuration();
        hdfsConf.setInt("dfs.replication", replication);
        // Permissions stay on: the YARN fault tests and real clusters both depend on them.
        hdfsConf.setBoolean("dfs.permissions.enabled", true);
        // The tests put the NameNode in safe mode on purpose; leaving it must be quick.
        hdfsConf.setInt("dfs.namenode.safemode.extension", 0);
        if (realm != null) {
            realm.secureServers(hdfsConf);
        }
        MiniDFSCluster.Builder builder = new MiniDFSCluster.Builder(hdfsConf, new File(dir, "dfs"))
                .numDataNodes(dataNodeCount)
                .format(true);
        if (ha) {
            // Two NameNodes sharing an edits directory; with no ZKFC here, the launcher picks the active one.
            builder.nnTopology(MiniDFSNNTopology.simpleHATopology());
        }
        MiniDFSCluster dfs = builder.build();
        if (ha) {
            dfs.transitionToActive(0);
        }
        dfs.waitActive();
        Configuration hdfsClient = hdfsClientConf(dfs, ha, replication);
        if (realm != null) {
            realm.client(hdfsClient);
        }
        List<String> dataNodes = new ArrayList<>();
        for (DataNode node : dfs.getDataNodes()) {
            dataNodes.add(node.getDatanodeId().getXferAddr());
        }
        FileSystem fs = dfs.getFileSystem(activeNameNode(dfs));
        // What a cluster's admin creates: /user, and sticky world-writable /tmp (Spark's staging may go there),
        // /apps (the profiles' cache_dir, /apps/botify) and /spark-history (the yarn profile's event logs).
        fs.mkdirs(new org.apache.hadoop.fs.Path("/user"), new FsPermission((short) 0755));
        for (String shared : new String[] {"/tmp", "/apps", "/spark-history"}) {
            fs.mkdirs(new org.apache.hadoop.fs.Path(shared), new FsPermission((short) 01777));
            fs.setPermission(new org.apache.hadoop.fs.Path(shared), new FsPermission((short) 01777));
        }
        if (realm != null) {
            // The Kerberos user's home (Spark's staging goes there); without security the client is the superuser.
            org.apache.hadoop.fs.Path home = new org.apache.hadoop.fs.Path("/user/" + Kerberos.CLIENT);
            fs.mkdirs(home, new FsPermission((short) 0755));
            fs.setOwner(home, Kerberos.CLIENT, null);
        }
        YarnConfiguration yarnConf = new YarnConfiguration();
        for (Map.Entry<String, String> entry : hdfsClient) {
            yarnConf.set(entry.getKey(), entry.getValue());
        }
        // Every YARN setting comes from the caller (pipeline/minicluster.py's YARN_CONF + its extra_conf).
        for (Map.Entry<Object, Object> entry : overlay.entrySet()) {
            yarnConf.set(entry.getKey().toString(), entry.getValue().toString());
        }
        if (realm != null) {
            realm.secureYarn(yarnConf);
        }

        // The ResourceManager alone in this JVM; each NodeManager runs in a JVM of its own (NodeManagers).
        MiniYARNCluster yarn = new MiniYARNCluster("botify", 0, 1, 1);
        yarn.init(yarnConf);
        yarn.start();
        Configuration live = yarn.getConfig();
        // start() can return before the RM has written its bound address back (Spark's suite waits too).
        waitFor(() -> !live.get(YarnConfiguration.RM_ADDRESS, "").endsWith(":0"), "the ResourceManager's address");
        writeXml(hdfsClient, new File(confDir, "core-site.xml"));
        writeXml(hdfsClient, new File(confDir, "hdfs-site.xml"));
        NodeManagers nodes = new NodeManagers(dir, confDir, nodeManagerCount, live, hdfsClient);
        for (int i = 0; i < nodes.count(); i++) {
            nodes.start(i);
        }
        waitFor(() -> {
            if (!nodes.allAlive()) {
                throw new IllegalStateException("a NodeManager exited; see " + dir + "/nodemanager-*.log");
            }
            return yarn.getResourceManager().getRMContext().getRMNodes().size() == nodes.count();
        }, nodes.count() + " NodeManager(s) to register");
        writeXml(yarnClientConf(live), new File(confDir, "yarn-site.xml"));
        writeReady(dir, info(dfs, ha, hdfsClient, live, dataNodes, nodes, confDir, realm));

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            nodes.stopAll();
            try {
                yarn.stop();
            } finally {
                dfs.shutdown();
                if (realm != null) {
                    realm.stop();
                }
            }
        }));
        serveAdmin(new Admin(dfs, nodes, dataNodes), new File(dir, "control"));
        System.exit(0);
    }

    /**
     * Stdin carries admin commands, one per line ({@code <id> <verb> [args]}); the answer goes to
     * {@code control/<id>}. Stdin closing means the process that started us is gone: do not outlive it.
     */
    private static void serveAdmin(Admin admin, File control) throws IOException {
        control.mkdirs();
        BufferedReader commands = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = commands.readLine(); line != null; line = commands.readLine()) {
            String[] words = line.trim().split("\\s+");
            if (words.length < 2) {
                continue;
            }
            String answer;
            try {
                answer = "ok " + admin.run(words[1], java.util.Arrays.copyOfRange(words, 2, words.length));
            } catch (Exception failure) {
                answer = "error " + failure;
            }
            Path reply = control.toPath().resolve(words[0]);
            Path partial = control.toPath().resolve(words[0] + ".tmp");
            Files.writeString(partial, answer + "\n", StandardCharsets.UTF_8);
            Files.move(partial, reply, StandardCopyOption.ATOMIC_MOVE);
        }
    }

    /** A topology option (botify.minicluster.NAME in the overlay), removed so YARN never sees it. */
    private static int topology(Properties overlay, String name, int fallback) {
        Object value = overlay.remove("botify.minicluster." + name);
        return value == null ? fallback : Integer.parseInt(value.toString().trim());
    }

    /**
     * What an HDFS client needs: fs.defaultFS and, for an HA name service, both NameNodes' addresses and the
     * failover proxy provider, as a real cluster's hdfs-site.xml has them.
     */
    private static Configuration hdfsClientConf(MiniDFSCluster dfs, boolean ha, int replication) {
        Configuration conf = new Configuration(false);
        conf.setInt("dfs.replication", replication);
        if (!ha) {
            conf.set("fs.defaultFS", dfs.getURI().toString());
            return conf;
        }
        String nameService = dfs.getConfiguration(0).get(DFSConfigKeys.DFS_NAMESERVICES);
        List<String> ids = new ArrayList<>();
        for (int i = 0; i < dfs.getNumNameNodes(); i++) {
            String id = "nn" + (i + 1);
            ids.add(id);
            conf.set("dfs.namenode.rpc-address." + nameService + "." + id,
                    hostPort(dfs.getNameNode(i).getNameNodeAddress()));
            conf.set("dfs.namenode.http-address." + nameService + "." + id,
                    hostPort(dfs.getNameNode(i).getHttpAddress()));
        }
        conf.set("dfs.nameservices", nameService);
        conf.set("dfs.ha.namenodes." + nameService, String.join(",", ids));
        conf.set("dfs.client.failover.proxy.provider." + nameService, ConfiguredFailoverProxyProvider.class.getName());
        conf.set("fs.defaultFS", "hdfs://" + nameService);
        return conf;
    }

    /** The ResourceManager's addresses, and what an application master reads as a YARN client. */
    private static Configuration yarnClientConf(Configuration live) {
        Configuration site = new Configuration(false);
        for (String key : new String[] {
                YarnConfiguration.RM_ADDRESS, YarnConfiguration.RM_SCHEDULER_ADDRESS,
                YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS, YarnConfiguration.RM_ADMIN_ADDRESS,
                YarnConfiguration.RM_WEBAPP_ADDRESS, YarnConfiguration.RM_HOSTNAME,
                YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB,
                YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_MB}) {
            site.set(key, live.get(key));
        }
        // Secure: whom a client expects the ResourceManager to be (and whom Spark names its tokens' renewer).
        if (live.get(YarnConfiguration.RM_PRINCIPAL) != null) {
            site.set(YarnConfiguration.RM_PRINCIPAL, live.get(YarnConfiguration.RM_PRINCIPAL));
        }
        // How long an application master keeps trying a NodeManager that is gone.
        for (Map.Entry<String, String> entry : live) {
            if (entry.getKey().startsWith("yarn.client.nodemanager-connect.")) {
                site.set(entry.getKey(), entry.getValue());
            }
        }
        return site;
    }

    private static Map<String, Object> info(MiniDFSCluster dfs, boolean ha, Configuration hdfsClient,
            Configuration live, List<String> dataNodes, NodeManagers nodes, File confDir, Kerberos realm) {
        Map<String, Object> info = new LinkedHashMap<>();
        info.put("fs_default", hdfsClient.get("fs.defaultFS"));
        info.put("rm_address", live.get(YarnConfiguration.RM_ADDRESS));
        info.put("rm_webapp", "http://" + live.get(YarnConfiguration.RM_WEBAPP_ADDRESS));
        info.put("namenode_http", "http://" + hostPort(dfs.getNameNode(activeNameNode(dfs)).getHttpAddress()));
        info.put("nameservice", ha ? hdfsClient.get("dfs.nameservices") : null);
        List<Map<String, Object>> nameNodes = new ArrayList<>();
        for (int i = 0; i < dfs.getNumNameNodes(); i++) {
            Map<String, Object> nameNode = new LinkedHashMap<>();
            nameNode.put("index", i);
            nameNode.put("rpc", hostPort(dfs.getNameNode(i).getNameNodeAddress()));
            nameNode.put("http", hostPort(dfs.getNameNode(i).getHttpAddress()));
            nameNodes.add(nameNode);
        }
        info.put("namenodes", nameNodes);
        info.put("datanodes", dataNodes);
        info.put("nodemanagers", nodes.describe());
        info.put("conf_dir", confDir.getPath());
        info.put("kerberos", realm == null ? null : realm.describe());
        info.put("pid", ProcessHandle.current().pid());
        return info;
    }

    private static void writeReady(File dir, Map<String, Object> info) throws IOException {
        Path tmp = dir.toPath().resolve("cluster.json.tmp");
        Files.writeString(tmp, new ObjectMapper().writeValueAsString(info) + "\n", StandardCharsets.UTF_8);
        Files.move(tmp, dir.toPath().resolve("cluster.json"), StandardCopyOption.ATOMIC_MOVE);
    }

    static int activeNameNode(MiniDFSCluster dfs) {
        for (int i = 0; i < dfs.getNumNameNodes(); i++) {
            if (dfs.getNameNode(i) != null && dfs.getNameNode(i).isActiveState()) {
                return i;
            }
        }
        throw new IllegalStateException("no NameNode is active");
    }

    private static String hostPort(InetSocketAddress address) {
        return "127.0.0.1:" + address.getPort();
    }

    private static void waitFor(Callable<Boolean> condition, String what) throws Exception {
        long deadline = System.currentTimeMillis() + 120_000;
        while (!condition.call()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("YARN did not come up: no " + what + " after 120 s");
            }
            Thread.sleep(200);
        }
    }

    private static void writeXml(Configuration conf, File file) throws IOException {
        try (OutputStream out = new FileOutputStream(file)) {
            conf.writeXml(out);
        }
    }
}
