// Safetensors and other file formats.
