"""Sources: readers that turn NetCDF files (and later database tables) into arrays."""
