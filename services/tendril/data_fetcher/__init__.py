"""DataFetcher: gets data slices for the worker's jobs.

Per job it asks the job's scheduler which slice comes next (CoordinationService.AssignSlice),
pulls the slice from its data node in 1 MiB chunks (resuming from the last offset after a
cut), checks its sha256, keeps it in a byte-bounded LRU cache on disk shared by every job,
and keeps the next slices prefetched so that training does not wait on the network.
"""
