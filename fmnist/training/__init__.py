"""Training logic: the LightningModule, its metrics, callbacks and the run driver."""
