"""The bundled trainer that TrainingJob PyTorchJobs run."""
