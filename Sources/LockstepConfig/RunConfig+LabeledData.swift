import LockstepData

/// The labeled files of a `task: classification` run, read as its `classification` section says.
extension RunConfig {
    /// Label names in id order: `classification.labels`, else the sorted distinct labels of `data.train`.
    public func labelMap() throws -> LabelMap {
        if let names = classification?.labels { return LabelMap(names: names) }
        return try labeledSet(pattern: data.train, labels: nil).labels
    }

    /// The labeled files matching `pattern`, read with the `classification` section's settings. With
    /// `labels`, a label outside them is an error naming the file and line.
    public func labeledSet(pattern: String, labels: LabelMap?) throws -> LabeledDataset {
        guard let settings = classification else {
            throw ConfigError(file: "<config>", key: "task", message: "labeled files need task: classification")
        }
        let files = try TokenWindowDataset.files(matching: pattern)
        return try LabeledDataset.load(files: files, options: settings.fileOptions(for: files[0]), labels: labels)
    }
}
