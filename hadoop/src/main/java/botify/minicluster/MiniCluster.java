package botify.minicluster;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.protocol.HdfsConstants;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;

/**
 * HDFS and YARN on this host, in one JVM, until stdin closes or the process gets SIGTERM.
 *
 * <p>Usage: {@code MiniCluster <dir> [yarn-overlay.properties]}: the YARN settings, as Spark's suite passes
 * its {@code newYarnConfig()} plus {@code extraConf}, come from the caller. Writes the client
 * configuration to {@code <dir>/conf} (core-site.xml, hdfs-site.xml, yarn-site.xml: a HADOOP_CONF_DIR),
 * then {@code <dir>/cluster.json} last, so its presence means "ready" (the one readiness signal). Every server binds to 127.0.0.1.
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
            System.err.println("usage: MiniCluster <dir> [yarn-overlay.properties]");
            System.exit(2);
        }
        File dir = new File(args[0]).getAbsoluteFile();
        java.util.Properties overlay = new java.util.Properties();
        if (args.length > 1) {
            try (java.io.Reader in = Files.newBufferedReader(Path.of(args[1]), StandardCharsets.UTF_8)) {
                overlay.load(in);
            }
        }
        File confDir = new File(dir, "conf");
        if (!confDir.mkdirs() && !confDir.isDirectory()) {
            throw new IOException("cannot create " + confDir);
        }

        Configuration hdfsConf = new Configuration();
        hdfsConf.set("dfs.replication", "1");
        // Permissions stay on: the YARN fault tests and real clusters both depend on them.
        hdfsConf.setBoolean("dfs.permissions.enabled", true);
        // The tests put the NameNode in safe mode on purpose; leaving it must be quick.
        hdfsConf.setInt("dfs.namenode.safemode.extension", 0);
        MiniDFSCluster dfs = new MiniDFSCluster.Builder(hdfsConf, new File(dir, "dfs"))
                .numDataNodes(1)
                .format(true)
                .build();
        dfs.waitActive();
        String defaultFs = dfs.getURI().toString();
        FileSystem fs = dfs.getFileSystem();
        // What a cluster's admin creates: a world-writable /tmp (Spark's staging may go there) and /user.
        fs.mkdirs(new org.apache.hadoop.fs.Path("/tmp"), new FsPermission((short) 01777));
        fs.setPermission(new org.apache.hadoop.fs.Path("/tmp"), new FsPermission((short) 01777));
        fs.mkdirs(new org.apache.hadoop.fs.Path("/user"), new FsPermission((short) 0755));

        YarnConfiguration yarnConf = new YarnConfiguration();
        yarnConf.set("fs.defaultFS", defaultFs);
        // Every YARN setting comes from the caller (pipeline/minicluster.py's YARN_CONF + its extra_conf).
        for (java.util.Map.Entry<Object, Object> entry : overlay.entrySet()) {
            yarnConf.set(entry.getKey().toString(), entry.getValue().toString());
        }

        // The ResourceManager alone here; its NodeManager runs in a JVM of its own (startNodeManager): web apps
        // in one JVM share Guice's static filter, and the last one started would answer the RM's REST API.
        MiniYARNCluster yarn = new MiniYARNCluster("botify", 0, 1, 1);
        yarn.init(yarnConf);
        yarn.start();
        Configuration live = yarn.getConfig();
        // start() can return before the RM has written its bound address back (Spark's suite waits too).
        waitFor(() -> !live.get(YarnConfiguration.RM_ADDRESS, "").endsWith(":0"), "the ResourceManager's address");
        File nmConf = new File(dir, "nodemanager-site.xml");
        Configuration nmSite = new Configuration(false);
        for (java.util.Map.Entry<String, String> entry : live) {
            if (entry.getKey().startsWith("yarn.")) {
                nmSite.set(entry.getKey(), entry.getValue());
            }
        }
        nmSite.set("fs.defaultFS", defaultFs);
        nmSite.set(YarnConfiguration.NM_LOCAL_DIRS, new File(dir, "nm-local").getPath());
        nmSite.set(YarnConfiguration.NM_LOG_DIRS, new File(dir, "nm-logs").getPath());
        nmSite.set(YarnConfiguration.NM_RECOVERY_ENABLED, "false");
        writeXml(nmSite, nmConf);
        Process nodeManager = new ProcessBuilder(javaCommand(NodeManagerMain.class.getName(), nmConf.getPath()))
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(new File(dir, "nodemanager.log")))
                .start();
        waitFor(() -> {
            if (!nodeManager.isAlive()) {
                throw new IllegalStateException("the NodeManager exited; see " + new File(dir, "nodemanager.log"));
            }
            return !yarn.getResourceManager().getRMContext().getRMNodes().isEmpty();
        }, "a NodeManager to register");

        Configuration core = new Configuration(false);
        core.set("fs.defaultFS", defaultFs);
        writeXml(core, new File(confDir, "core-site.xml"));
        Configuration hdfsSite = new Configuration(false);
        hdfsSite.set("dfs.replication", "1");
        writeXml(hdfsSite, new File(confDir, "hdfs-site.xml"));
        Configuration yarnSite = new Configuration(false);
        for (String key : new String[] {
                YarnConfiguration.RM_ADDRESS, YarnConfiguration.RM_SCHEDULER_ADDRESS,
                YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS, YarnConfiguration.RM_ADMIN_ADDRESS,
                YarnConfiguration.RM_WEBAPP_ADDRESS, YarnConfiguration.RM_HOSTNAME,
                YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB,
                YarnConfiguration.RM_SCHEDULER_MAXIMUM_ALLOCATION_MB}) {
            yarnSite.set(key, live.get(key));
        }
        writeXml(yarnSite, new File(confDir, "yarn-site.xml"));

        String json = String.format(
                "{\"fs_default\": \"%s\", \"rm_address\": \"%s\", \"rm_webapp\": \"http://%s\", "
                        + "\"namenode_http\": \"http://%s\", \"conf_dir\": \"%s\", \"pid\": %d}%n",
                defaultFs, live.get(YarnConfiguration.RM_ADDRESS), live.get(YarnConfiguration.RM_WEBAPP_ADDRESS),
                dfs.getNameNode().getHttpAddress().getHostString() + ":" + dfs.getNameNode().getHttpAddress().getPort(),
                confDir.getPath(), ProcessHandle.current().pid());
        Path ready = dir.toPath().resolve("cluster.json");
        Path tmp = dir.toPath().resolve("cluster.json.tmp");
        Files.writeString(tmp, json, StandardCharsets.UTF_8);
        Files.move(tmp, ready, StandardCopyOption.ATOMIC_MOVE);

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            nodeManager.destroy();
            stop(yarn, dfs);
        }));
        // Stdin carries admin commands (what `hdfs dfsadmin` would do; no Hadoop CLI is installed here).
        // Its closing means the process that started us is gone: do not outlive it.
        File control = new File(dir, "control");
        control.mkdirs();
        java.io.BufferedReader commands = new java.io.BufferedReader(
                new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = commands.readLine(); line != null; line = commands.readLine()) {
            String[] words = line.trim().split("\\s+");
            if (words.length < 2) {
                continue;
            }
            String answer;
            try {
                answer = "ok " + admin(dfs, words);
            } catch (Exception failure) {
                answer = "error " + failure;
            }
            Path reply = control.toPath().resolve(words[0]);
            Path partial = control.toPath().resolve(words[0] + ".tmp");
            Files.writeString(partial, answer + "\n", StandardCharsets.UTF_8);
            Files.move(partial, reply, StandardCopyOption.ATOMIC_MOVE);
        }
        System.exit(0);
    }

    /** One admin command: {@code <id> <verb> [args]}; returns what to report. */
    private static String admin(MiniDFSCluster dfs, String[] words) throws Exception {
        switch (words[1]) {
            case "safemode-enter":
                dfs.getFileSystem().setSafeMode(HdfsConstants.SafeModeAction.SAFEMODE_ENTER);
                return "in safe mode";
            case "safemode-leave":
                dfs.getFileSystem().setSafeMode(HdfsConstants.SafeModeAction.SAFEMODE_LEAVE);
                return "out of safe mode";
            case "space-quota":
                dfs.getFileSystem().setQuota(new org.apache.hadoop.fs.Path(words[2]), HdfsConstants.QUOTA_DONT_SET,
                        Long.parseLong(words[3]));
                return "space quota " + words[3] + " on " + words[2];
            case "clear-quota":
                dfs.getFileSystem().setQuota(new org.apache.hadoop.fs.Path(words[2]), HdfsConstants.QUOTA_DONT_SET,
                        HdfsConstants.QUOTA_RESET);
                return "no quota on " + words[2];
            case "namenode-stop":
                dfs.shutdownNameNode(0);
                return "namenode stopped";
            case "namenode-start":
                dfs.restartNameNode(0, true);
                return "namenode started";
            default:
                throw new IllegalArgumentException("unknown command " + words[1]);
        }
    }

    /** The same JVM (binary, class path, module flags) for the NodeManager child. */
    private static java.util.List<String> javaCommand(String mainClass, String... args) {
        java.util.List<String> command = new java.util.ArrayList<>();
        command.add(ProcessHandle.current().info().command().orElse("java"));
        command.addAll(java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments());
        command.add("-cp");
        command.add(System.getProperty("java.class.path"));
        command.add(mainClass);
        command.addAll(java.util.Arrays.asList(args));
        return command;
    }

    private static void waitFor(java.util.concurrent.Callable<Boolean> condition, String what) throws Exception {
        long deadline = System.currentTimeMillis() + 120_000;
        while (!condition.call()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("YARN did not come up: no " + what + " after 120 s");
            }
            Thread.sleep(200);
        }
    }

    private static void stop(MiniYARNCluster yarn, MiniDFSCluster dfs) {
        try {
            yarn.stop();
        } finally {
            dfs.shutdown();
        }
    }

    private static void writeXml(Configuration conf, File file) throws IOException {
        try (OutputStream out = new FileOutputStream(file)) {
            conf.writeXml(out);
        }
    }
}
