import Foundation
import LockstepTestSupport
import Testing

@testable import LockstepKernels

@Suite struct OpenBLASEnvironmentTests {
    /// The flags of this machine's Emerald Rapids (family 6 model 207), which OpenBLAS 0.3.21 took for a Prescott.
    static let avx512 = Set(
        "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512vbmi"
            .split(separator: " ").map(String.init))

    @Test func unknownCPUsGetTheKernelsTheirFlagsAllow() {
        #expect(OpenBLASEnvironment.coreTypeForUnknownCPU(detectedCore: "Prescott", cpuFlags: Self.avx512) == "SkylakeX")
        #expect(OpenBLASEnvironment.coreTypeForUnknownCPU(detectedCore: "PRESCOTT", cpuFlags: Self.avx512) == "SkylakeX")
        let avx2 = Self.avx512.filter { !$0.hasPrefix("avx512") }
        #expect(OpenBLASEnvironment.coreTypeForUnknownCPU(detectedCore: "Prescott", cpuFlags: avx2) == "Haswell")
        // AVX-512 without the subsets the SkylakeX kernels use (a Xeon Phi has no BW, DQ or VL): AVX2 kernels.
        let phi = avx2.union(["avx512f", "avx512cd", "avx512er", "avx512pf"])
        #expect(OpenBLASEnvironment.coreTypeForUnknownCPU(detectedCore: "Prescott", cpuFlags: phi) == "Haswell")
        #expect(OpenBLASEnvironment.coreTypeForUnknownCPU(detectedCore: "Prescott", cpuFlags: ["sse3", "avx"]) == nil)
        #expect(OpenBLASEnvironment.coreTypeForUnknownCPU(detectedCore: "Prescott", cpuFlags: []) == nil)
    }

    @Test func aCPUOpenBLASKnowsKeepsItsChoice() {
        for core in ["SkylakeX", "Haswell", "Zen", "Cooperlake", "Sandybridge"] {
            #expect(OpenBLASEnvironment.coreTypeForUnknownCPU(detectedCore: core, cpuFlags: Self.avx512) == nil, "\(core)")
        }
    }

    @Test func readsTheFirstProcessorsFlags() throws {
        let directory = try TemporaryDirectory()
        let file = directory.url.appendingPathComponent("cpuinfo")
        try "processor\t: 0\nmodel\t\t: 207\nflags\t\t: fpu avx2 fma avx512f\n\nprocessor\t: 1\nflags\t\t: fpu\n"
            .write(to: file, atomically: true, encoding: .utf8)
        #expect(OpenBLASEnvironment.cpuFlags(cpuinfo: file.path) == ["fpu", "avx2", "fma", "avx512f"])
        #expect(OpenBLASEnvironment.cpuFlags(cpuinfo: directory.url.appendingPathComponent("absent").path).isEmpty)
        // This process's OpenBLAS names the kernels it chose.
        #expect(!OpenBLASEnvironment.detectedCore.isEmpty && OpenBLASEnvironment.detectedCore != "unknown")
    }
}
