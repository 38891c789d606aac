package botify.minicluster;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.hadoop.fs.Path;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.MiniDFSCluster.DataNodeProperties;
import org.apache.hadoop.hdfs.protocol.HdfsConstants;

/**
 * What an operator (or a failing machine) does to the cluster, for the tests: what {@code hdfs dfsadmin},
 * {@code hdfs haadmin} and a pulled plug would do. No Hadoop CLI is installed here. A NameNode, DataNode or
 * NodeManager is named by its index in cluster.json; a NameNode verb without one means the active NameNode.
 */
final class Admin {

    private final MiniDFSCluster dfs;
    private final NodeManagers nodes;
    private final List<String> dataNodes;
    private final Map<Integer, DataNodeProperties> stoppedDataNodes = new HashMap<>();
    private int lastStoppedNameNode;

    Admin(MiniDFSCluster dfs, NodeManagers nodes, List<String> dataNodes) {
        this.dfs = dfs;
        this.nodes = nodes;
        this.dataNodes = dataNodes;
    }

    /** Runs one command; returns what to report. */
    String run(String verb, String[] args) throws Exception {
        switch (verb) {
            case "safemode-enter":
                activeFs().setSafeMode(HdfsConstants.SafeModeAction.SAFEMODE_ENTER);
                return "in safe mode";
            case "safemode-leave":
                activeFs().setSafeMode(HdfsConstants.SafeModeAction.SAFEMODE_LEAVE);
                return "out of safe mode";
            case "space-quota":
                activeFs().setQuota(new Path(args[0]), HdfsConstants.QUOTA_DONT_SET, Long.parseLong(args[1]));
                return "space quota " + args[1] + " on " + args[0];
            case "clear-quota":
                activeFs().setQuota(new Path(args[0]), HdfsConstants.QUOTA_DONT_SET, HdfsConstants.QUOTA_RESET);
                return "no quota on " + args[0];
            case "namenode-stop": {
                // A NameNode killed: no handing over; with HA the other stays standby until made active.
                int index = args.length > 0 ? Integer.parseInt(args[0]) : MiniCluster.activeNameNode(dfs);
                dfs.shutdownNameNode(index);
                lastStoppedNameNode = index;
                return "namenode " + index + " stopped";
            }
            case "namenode-start": {
                int index = args.length > 0 ? Integer.parseInt(args[0]) : lastStoppedNameNode;
                // With HA it comes back as a standby, which answers no client until made active.
                dfs.restartNameNode(index, dfs.getNumNameNodes() == 1);
                return "namenode " + index + " started";
            }
            case "namenode-activate": {
                int index = Integer.parseInt(args[0]);
                dfs.transitionToActive(index);
                return "namenode " + index + " active";
            }
            case "namenode-failover": {
                // What `hdfs haadmin -failover` does when both are up: the active steps down first.
                int from = MiniCluster.activeNameNode(dfs);
                int to = 1 - from;
                dfs.transitionToStandby(from);
                dfs.transitionToActive(to);
                return "namenode " + to + " active, " + from + " standby";
            }
            case "datanode-stop": {
                int index = Integer.parseInt(args[0]);
                DataNodeProperties stopped = dfs.stopDataNode(dataNodes.get(index));
                if (stopped == null) {
                    throw new IllegalStateException("datanode " + index + " is not running");
                }
                stoppedDataNodes.put(index, stopped);
                return "datanode " + index + " stopped";
            }
            case "datanode-start": {
                int index = Integer.parseInt(args[0]);
                DataNodeProperties stopped = stoppedDataNodes.remove(index);
                if (stopped == null) {
                    throw new IllegalStateException("datanode " + index + " was not stopped");
                }
                dfs.restartDataNode(stopped, true);
                return "datanode " + index + " started";
            }
            case "nodemanager-stop": {
                int index = Integer.parseInt(args[0]);
                nodes.kill(index);
                return "nodemanager " + index + " lost";
            }
            case "nodemanager-start": {
                int index = Integer.parseInt(args[0]);
                nodes.start(index);
                return "nodemanager " + index + " started";
            }
            default:
                throw new IllegalArgumentException("unknown command " + verb);
        }
    }

    private DistributedFileSystem activeFs() throws java.io.IOException {
        return dfs.getFileSystem(MiniCluster.activeNameNode(dfs));
    }
}
