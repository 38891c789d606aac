package botify.minicluster;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.yarn.conf.YarnConfiguration;

/**
 * The cluster's NodeManagers, each a JVM of its own (web apps in one JVM share Guice's static filter, and the
 * last one started would answer the ResourceManager's REST API). Node {@code i} keeps its ports across a
 * restart, its containers' logs in {@code nm-logs/<i>}, its own log in {@code nodemanager-<i>.log}.
 */
final class NodeManagers {

    private final File dir;
    private final File confDir;
    private final List<File> sites = new ArrayList<>();
    private final List<String> addresses = new ArrayList<>();
    private final List<String> webapps = new ArrayList<>();
    private final List<Process> processes = new ArrayList<>();

    /**
     * {@code live}: the ResourceManager's configuration (its bound addresses and every yarn.* key);
     * {@code confDir}: the HDFS client's core-site.xml and hdfs-site.xml, which the node's localizer, a JVM
     * of its own, finds on its class path (an HA name service is only known from there).
     */
    NodeManagers(File dir, File confDir, int count, Configuration live, Configuration hdfsClient) throws IOException {
        this.dir = dir;
        this.confDir = confDir;
        for (int i = 0; i < count; i++) {
            Configuration site = new Configuration(false);
            for (Map.Entry<String, String> entry : live) {
                if (entry.getKey().startsWith("yarn.")) {
                    site.set(entry.getKey(), entry.getValue());
                }
            }
            for (Map.Entry<String, String> entry : hdfsClient) {
                site.set(entry.getKey(), entry.getValue());
            }
            // Fixed ports, so a restarted node is the same node to the ResourceManager and to the tests.
            String address = "127.0.0.1:" + freePort();
            String webapp = "127.0.0.1:" + freePort();
            site.set(YarnConfiguration.NM_ADDRESS, address);
            site.set(YarnConfiguration.NM_WEBAPP_ADDRESS, webapp);
            site.set(YarnConfiguration.NM_LOCALIZER_ADDRESS, "127.0.0.1:" + freePort());
            site.set(YarnConfiguration.NM_LOCAL_DIRS, new File(dir, "nm-local/" + i).getPath());
            site.set(YarnConfiguration.NM_LOG_DIRS, new File(dir, "nm-logs/" + i).getPath());
            site.set(YarnConfiguration.NM_RECOVERY_ENABLED, "false");
            File file = new File(dir, "nodemanager-" + i + "-site.xml");
            try (OutputStream out = new FileOutputStream(file)) {
                site.writeXml(out);
            }
            sites.add(file);
            addresses.add(address);
            webapps.add(webapp);
            processes.add(null);
        }
    }

    void start(int i) throws IOException {
        if (processes.get(i) != null && processes.get(i).isAlive()) {
            throw new IllegalStateException("NodeManager " + i + " is running");
        }
        processes.set(i, new ProcessBuilder(Jvm.command(confDir.getPath(), NodeManagerMain.class.getName(), sites.get(i).getPath()))
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log(i)))
                .start());
    }

    /**
     * The node is lost, as when its host dies: the NodeManager and every container it started are killed at
     * once, nothing is unregistered. The ResourceManager notices when the node's liveness expires.
     */
    void kill(int i) {
        Process process = processes.get(i);
        if (process == null || !process.isAlive()) {
            throw new IllegalStateException("NodeManager " + i + " is not running");
        }
        // Containers run in sessions of their own (setsid) but stay the NodeManager's descendants.
        process.descendants().forEach(ProcessHandle::destroyForcibly);
        process.destroyForcibly();
        try {
            process.waitFor();
        } catch (InterruptedException interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    void stopAll() {
        for (Process process : processes) {
            if (process != null) {
                process.destroy();
            }
        }
    }

    boolean allAlive() {
        return processes.stream().allMatch(p -> p != null && p.isAlive());
    }

    File log(int i) {
        return new File(dir, "nodemanager-" + i + ".log");
    }

    int count() {
        return sites.size();
    }

    /** What cluster.json says about each node: the NodeId YARN gives it and its web address. */
    List<Map<String, Object>> describe() {
        List<Map<String, Object>> nodes = new ArrayList<>();
        for (int i = 0; i < sites.size(); i++) {
            Map<String, Object> node = new LinkedHashMap<>();
            node.put("index", i);
            node.put("id", addresses.get(i));
            node.put("http", webapps.get(i));
            nodes.add(node);
        }
        return nodes;
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            socket.setReuseAddress(true);
            return socket.getLocalPort();
        }
    }
}
