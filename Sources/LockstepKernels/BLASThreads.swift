import COpenBLAS

/// OpenBLAS's thread pool size. Data-parallel workers usually want 1 thread each (one process per core);
/// a single process may use all cores.
public enum BLASThreads {
    public static func set(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
    }

    public static var current: Int { Int(openblas_get_num_threads()) }
}
