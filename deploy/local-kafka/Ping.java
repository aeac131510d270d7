import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

/** Waits until a Kafka client's metadata request to the broker succeeds, or the deadline passes. */
public final class Ping {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "2000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "3000");
        Exception last = null;
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                try {
                    DescribeClusterResult cluster = admin.describeCluster();
                    int nodes = cluster.nodes().get(3, TimeUnit.SECONDS).size();
                    System.out.println("broker ready at " + bootstrap + " (" + nodes + " node, cluster "
                            + cluster.clusterId().get(3, TimeUnit.SECONDS) + ")");
                    return;
                } catch (Exception e) {
                    last = e;
                    Thread.sleep(250);
                }
            }
        }
        System.err.println("broker at " + bootstrap + " not ready: " + last);
        System.exit(1);
    }
}
