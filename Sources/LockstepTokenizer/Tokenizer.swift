// Byte-level BPE tokenizer.
