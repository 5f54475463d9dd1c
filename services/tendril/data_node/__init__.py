"""Data sets and the data node: ``tendril data prepare`` turns text into SafeTensors slices plus a
manifest; ``tendril data serve`` serves them as resumable 1 MiB chunk streams and announces the
data set in the gateway registry."""
