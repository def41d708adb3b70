"""Training engine: pure jitted train/eval steps, the study's optimizer and schedule, the epoch loop,
Orbax checkpoints, metric writers, and data-parallel sharding with optionally sharded parameters."""
