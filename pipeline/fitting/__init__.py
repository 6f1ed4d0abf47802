"""Body-model fitting: inputs, cameras and initialisation, losses, the optimiser."""
