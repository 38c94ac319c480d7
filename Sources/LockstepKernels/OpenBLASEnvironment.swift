import COpenBLAS
import Foundation

/// OpenBLAS settings that must be in the environment before OpenBLAS loads, which it does before `main`: a
/// process that lacks one sets it and starts itself again (`restart`), once.
public enum OpenBLASEnvironment {
    /// OpenBLAS's choice of kernels, read as it loads (a DYNAMIC_ARCH build, as Debian's).
    public static let coreTypeVariable = "OPENBLAS_CORETYPE"

    /// The kernels OpenBLAS should use when it does not know this CPU. OpenBLAS 0.3.21 (Debian 12) takes a CPU
    /// model it has no entry for (Intel family 6 model 207, Emerald Rapids, seen here) for a 2004 Prescott and
    /// runs SSE3 kernels: sgemm at 28 GFLOP/s on one core, where its AVX-512 kernels (`SkylakeX`) give 143
    /// (docs/BENCHMARKS.md). Prescott is never the right choice for a CPU with AVX2.
    /// - Returns: `SkylakeX` for a CPU with the AVX-512 subsets those kernels use, `Haswell` for AVX2 with FMA;
    ///   nil when OpenBLAS chose anything but Prescott, or the CPU has neither.
    public static func coreTypeForUnknownCPU(detectedCore: String, cpuFlags: Set<String>) -> String? {
        guard detectedCore.lowercased() == "prescott" else { return nil }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]) { return "SkylakeX" }
        if cpuFlags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// The kernels OpenBLAS chose as it loaded (`openblas_get_corename`): "SkylakeX", "Haswell", "Zen", ...
    public static var detectedCore: String {
        openblas_get_corename().map { String(cString: $0) } ?? "unknown"
    }

    /// The first processor's `flags` in /proc/cpuinfo; empty where there are none.
    public static func cpuFlags(cpuinfo: String = "/proc/cpuinfo") -> Set<String> {
        guard let text = try? String(contentsOfFile: cpuinfo, encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
            let colon = line.firstIndex(of: ":")
        else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }

    /// `OPENBLAS_CORETYPE` for this process when it is unset and OpenBLAS took this CPU for a Prescott.
    public static func coreTypeSetting() -> (name: String, value: String)? {
        guard getenv(coreTypeVariable) == nil,
            let core = coreTypeForUnknownCPU(detectedCore: detectedCore, cpuFlags: cpuFlags())
        else { return nil }
        return (coreTypeVariable, core)
    }

    /// Sets each of `settings` that is not in the environment already, and if it set any, starts this
    /// executable again in this process (`execv` of /proc/self/exe, the same arguments), where OpenBLAS then
    /// loads with them. Processes it starts inherit them.
    /// - Returns: only when it set nothing (nil), or when the restart failed: why.
    public static func restart(setting settings: [(name: String, value: String)]) -> String? {
        let missing = settings.filter { getenv($0.name) == nil }
        guard !missing.isEmpty else { return nil }
        for setting in missing { setenv(setting.name, setting.value, 1) }
        var arguments = CommandLine.arguments.map { strdup($0) }
        arguments.append(nil)
        execv("/proc/self/exe", arguments)
        return String(cString: strerror(errno))
    }
}
