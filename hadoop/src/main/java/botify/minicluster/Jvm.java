package botify.minicluster;

import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** The command line of a JVM like this one (binary, class path, module flags) running another main class. */
final class Jvm {

    private Jvm() {
    }

    /** {@code confDir} goes first on the class path: what the child's helpers (YARN's localizer) read. */
    static List<String> command(String confDir, String mainClass, String... args) {
        List<String> command = new ArrayList<>();
        command.add(ProcessHandle.current().info().command().orElse("java"));
        command.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        // MiniKdc names its krb5.conf as a system property at run time, not on the command line.
        String krb5 = System.getProperty("java.security.krb5.conf");
        if (krb5 != null) {
            command.add("-Djava.security.krb5.conf=" + krb5);
        }
        command.add("-cp");
        command.add(confDir + java.io.File.pathSeparator + System.getProperty("java.class.path"));
        command.add(mainClass);
        command.addAll(Arrays.asList(args));
        return command;
    }
}
