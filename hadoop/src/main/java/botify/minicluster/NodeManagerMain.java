package botify.minicluster;

import org.apache.hadoop.fs.Path;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.nodemanager.NodeManager;

/**
 * The mini cluster's NodeManager, in a JVM of its own. Usage: {@code NodeManagerMain <nodemanager-site.xml>}.
 * It stops when its parent (the MiniCluster JVM, which holds its stdin) goes away.
 */
public final class NodeManagerMain {

    private NodeManagerMain() {
    }

    public static void main(String[] args) throws Exception {
        YarnConfiguration conf = new YarnConfiguration();
        conf.addResource(new Path(args[0]));
        NodeManager nodeManager = new NodeManager();
        try {
            nodeManager.init(conf);
            nodeManager.start();
        } catch (Throwable failure) {
            failure.printStackTrace();
            System.exit(1);
        }
        Runtime.getRuntime().addShutdownHook(new Thread(nodeManager::stop));
        while (System.in.read() != -1) {
            // the parent never writes; EOF means it is gone
        }
        System.exit(0);
    }
}
