// Token shards and streaming loaders.
