import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type handleServerStreamingCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { SliceAssignment } from "../../scheduler/v1/scheduler";
/** SliceInfo describes one slice file. */
export interface SliceInfo {
    /** File name, e.g. "slice-00000.safetensors". */
    name: string;
    /** Size in bytes. */
    sizeBytes: number;
    /** Hex sha256. */
    sha256: string;
    /** Number of sequences in it. */
    numSequences: number;
}
/** AssetInfo describes a file served beside the slices. */
export interface AssetInfo {
    /** File name, e.g. "tokenizer.tar". */
    name: string;
    /** Size in bytes. */
    sizeBytes: number;
    /** Hex sha256. */
    sha256: string;
    /**
     * "tokenizer" (a tokenizer folder as a tar), "processor" (an image processor folder) or
     * "model" (a checkpoint folder, added with `tendril data add-model`; jobs load it as
     * tendril-data://<dataset_id>/<name>).
     */
    kind: string;
}
/** Manifest describes a data set. */
export interface Manifest {
    /** Data set id. */
    datasetId: string;
    /** Slices in order. */
    slices: SliceInfo[];
    /** Tokenizer used ("bytes" for the byte-level tokenizer). */
    tokenizer: string;
    /** Tokens per sequence. */
    seqLen: number;
    /** Vocabulary size of the tokenizer. */
    vocabSize: number;
    /**
     * Task the data set trains ("causal-lm", "masked-lm", "seq2seq-lm", "sequence-classification",
     * "image-classification").
     */
    task: string;
    /** The held-out split: served by FetchSlice like any slice, never assigned to a training job. */
    evalSlices: SliceInfo[];
    /** Files served beside the slices (the tokenizer or image processor, checkpoints, as tars). */
    assets: AssetInfo[];
    /**
     * The whole manifest.json (format "tendril-dataset/2", dataset_id as served): the named
     * tensors with dtypes and shapes, label names, special token ids.
     */
    manifestJson: string;
}
/** GetManifestRequest names a data set. */
export interface GetManifestRequest {
    /** Data set id; empty when the node serves one data set. */
    datasetId: string;
}
/** GetManifestResponse returns the manifest. */
export interface GetManifestResponse {
    /** The manifest. */
    manifest: Manifest | undefined;
}
/** FetchSliceRequest names a slice and where to start. */
export interface FetchSliceRequest {
    /** Data set id. */
    datasetId: string;
    /** Slice file name. */
    sliceName: string;
    /** Byte offset to start from (resume). */
    offset: number;
}
/** FetchSliceResponse is one chunk. */
export interface FetchSliceResponse {
    /** Offset of data in the file. */
    offset: number;
    /** The bytes. */
    data: Buffer;
    /** Size of the whole file. */
    totalBytes: number;
}
/** OpenJobRequest starts fetching for a job. */
export interface OpenJobRequest {
    /** Job id. */
    jobId: string;
    /** Worker id (sent to the scheduler). */
    workerId: string;
    /** Address of the job's scheduler CoordinationService. */
    coordinatorAddress: string;
    /**
     * Slices to keep prefetched; unset means the worker's configured default
     * (data_fetcher.prefetch), 0 means none: each NextSlice fetches its slice when it asks.
     */
    prefetch?: number | undefined;
}
/** OpenJobResponse is empty. */
export interface OpenJobResponse {
}
/** NextSliceRequest names the job. */
export interface NextSliceRequest {
    /** Job id. */
    jobId: string;
}
/** NextSliceResponse tells where the slice is. */
export interface NextSliceResponse {
    /** Absolute path of the verified slice in the cache (read-only). */
    cachePath: string;
    /** The assignment. */
    assignment: SliceAssignment | undefined;
    /** Seconds the call waited (0 when prefetched). */
    waitSeconds: number;
}
/** CloseJobRequest names the job. */
export interface CloseJobRequest {
    /** Job id. */
    jobId: string;
}
/** CloseJobResponse is empty. */
export interface CloseJobResponse {
}
/** GetStatsRequest is empty. */
export interface GetStatsRequest {
}
/** GetStatsResponse carries counters since start. */
export interface GetStatsResponse {
    /** Slice requests served from the cache. */
    cacheHits: number;
    /** Slice requests that needed a download. */
    cacheMisses: number;
    /** Bytes now in the cache. */
    cacheBytes: number;
    /** Cache capacity in bytes. */
    cacheCapacityBytes: number;
    /** Bytes downloaded from data nodes. */
    bytesDownloaded: number;
    /** Seconds NextSlice callers waited in total. */
    waitSeconds: number;
    /** Slices that failed verification. */
    sha256Mismatches: number;
    /** Jobs open. */
    openJobs: number;
    /** Downloads that resumed from a byte offset after a cut stream. */
    resumedFetches: number;
    /** Slices evicted from the cache to stay within its capacity. */
    evictions: number;
}
/**
 * DatasetRecord is what a data node announces in the gateway registry
 * (record kind "dataset", id = dataset id, payload = an Any holding this message).
 */
export interface DatasetRecord {
    /** Data set id. */
    datasetId: string;
    /** DataNodeService address serving the data set. */
    address: string;
    /** The data set's manifest. */
    manifest: Manifest | undefined;
}
export declare const SliceInfo: MessageFns<SliceInfo>;
export declare const AssetInfo: MessageFns<AssetInfo>;
export declare const Manifest: MessageFns<Manifest>;
export declare const GetManifestRequest: MessageFns<GetManifestRequest>;
export declare const GetManifestResponse: MessageFns<GetManifestResponse>;
export declare const FetchSliceRequest: MessageFns<FetchSliceRequest>;
export declare const FetchSliceResponse: MessageFns<FetchSliceResponse>;
export declare const OpenJobRequest: MessageFns<OpenJobRequest>;
export declare const OpenJobResponse: MessageFns<OpenJobResponse>;
export declare const NextSliceRequest: MessageFns<NextSliceRequest>;
export declare const NextSliceResponse: MessageFns<NextSliceResponse>;
export declare const CloseJobRequest: MessageFns<CloseJobRequest>;
export declare const CloseJobResponse: MessageFns<CloseJobResponse>;
export declare const GetStatsRequest: MessageFns<GetStatsRequest>;
export declare const GetStatsResponse: MessageFns<GetStatsResponse>;
export declare const DatasetRecord: MessageFns<DatasetRecord>;
/** DataNodeService serves a prepared data set: a folder of SafeTensors slices and a manifest. */
export type DataNodeServiceService = typeof DataNodeServiceService;
export declare const DataNodeServiceService: {
    /**
     * GetManifest describes a data set.
     *
     * Errors:
     *   NOT_FOUND DATASET_NOT_FOUND: the node serves another data set.
     */
    readonly getManifest: {
        readonly path: "/tendril.data.v1.DataNodeService/GetManifest";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetManifestRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetManifestRequest;
        readonly responseSerialize: (value: GetManifestResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetManifestResponse;
    };
    /**
     * FetchSlice streams a file of the data set in chunks of 1 MiB, from any offset: a training
     * slice, a held-out slice (eval_slices) or an asset (assets), by name.
     *
     * Errors:
     *   NOT_FOUND DATASET_NOT_FOUND: the node serves another data set.
     *   INVALID_ARGUMENT NO_SLICE, BAD_SLICE_NAME: slice_name is empty or not a plain file name.
     *   NOT_FOUND SLICE_NOT_FOUND: the manifest has no slice, eval slice or asset of that name.
     *   OUT_OF_RANGE OFFSET_OUT_OF_RANGE: offset is past the end of the slice.
     */
    readonly fetchSlice: {
        readonly path: "/tendril.data.v1.DataNodeService/FetchSlice";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: FetchSliceRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => FetchSliceRequest;
        readonly responseSerialize: (value: FetchSliceResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => FetchSliceResponse;
    };
};
export interface DataNodeServiceServer extends UntypedServiceImplementation {
    /**
     * GetManifest describes a data set.
     *
     * Errors:
     *   NOT_FOUND DATASET_NOT_FOUND: the node serves another data set.
     */
    getManifest: handleUnaryCall<GetManifestRequest, GetManifestResponse>;
    /**
     * FetchSlice streams a file of the data set in chunks of 1 MiB, from any offset: a training
     * slice, a held-out slice (eval_slices) or an asset (assets), by name.
     *
     * Errors:
     *   NOT_FOUND DATASET_NOT_FOUND: the node serves another data set.
     *   INVALID_ARGUMENT NO_SLICE, BAD_SLICE_NAME: slice_name is empty or not a plain file name.
     *   NOT_FOUND SLICE_NOT_FOUND: the manifest has no slice, eval slice or asset of that name.
     *   OUT_OF_RANGE OFFSET_OUT_OF_RANGE: offset is past the end of the slice.
     */
    fetchSlice: handleServerStreamingCall<FetchSliceRequest, FetchSliceResponse>;
}
export interface DataNodeServiceClient extends Client {
    /**
     * GetManifest describes a data set.
     *
     * Errors:
     *   NOT_FOUND DATASET_NOT_FOUND: the node serves another data set.
     */
    getManifest(request: GetManifestRequest, callback: (error: ServiceError | null, response: GetManifestResponse) => void): ClientUnaryCall;
    getManifest(request: GetManifestRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetManifestResponse) => void): ClientUnaryCall;
    getManifest(request: GetManifestRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetManifestResponse) => void): ClientUnaryCall;
    /**
     * FetchSlice streams a file of the data set in chunks of 1 MiB, from any offset: a training
     * slice, a held-out slice (eval_slices) or an asset (assets), by name.
     *
     * Errors:
     *   NOT_FOUND DATASET_NOT_FOUND: the node serves another data set.
     *   INVALID_ARGUMENT NO_SLICE, BAD_SLICE_NAME: slice_name is empty or not a plain file name.
     *   NOT_FOUND SLICE_NOT_FOUND: the manifest has no slice, eval slice or asset of that name.
     *   OUT_OF_RANGE OFFSET_OUT_OF_RANGE: offset is past the end of the slice.
     */
    fetchSlice(request: FetchSliceRequest, options?: Partial<CallOptions>): ClientReadableStream<FetchSliceResponse>;
    fetchSlice(request: FetchSliceRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<FetchSliceResponse>;
}
export declare const DataNodeServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): DataNodeServiceClient;
    service: typeof DataNodeServiceService;
    serviceName: string;
};
/**
 * DataFetcherService gets data slices for the worker's jobs: it asks each job's scheduler
 * which slice comes next, pulls it from the data node, verifies it, caches it, and keeps
 * the next slices prefetched.
 */
export type DataFetcherServiceService = typeof DataFetcherServiceService;
export declare const DataFetcherServiceService: {
    /**
     * OpenJob starts fetching for a job (called by the job's bridge).
     *
     * Errors:
     *   INVALID_ARGUMENT JOB_ID_MISSING, BAD_JOB_ID: job_id is empty, or not 1-64 letters, digits,
     *     '.', '_' or '-' (JobService's rule for job ids).
     *   INVALID_ARGUMENT WORKER_ID_MISSING, COORDINATOR_MISSING: worker_id or coordinator_address is
     *     empty.
     *   INVALID_ARGUMENT BAD_WORKER_ID: worker_id is not a peer id (1-128 letters, digits, '.', '_',
     *     '-', ':' or '@', starting with a letter or digit).
     *   INVALID_ARGUMENT BAD_COORDINATOR_ADDRESS: coordinator_address is not host:port (or
     *     unix:PATH).
     *   INVALID_ARGUMENT BAD_PREFETCH: prefetch is outside 0..32.
     *   ALREADY_EXISTS JOB_ALREADY_OPEN: the job is open with another scheduler or worker; CloseJob
     *     it first.
     */
    readonly openJob: {
        readonly path: "/tendril.data.v1.DataFetcherService/OpenJob";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: OpenJobRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => OpenJobRequest;
        readonly responseSerialize: (value: OpenJobResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => OpenJobResponse;
    };
    /**
     * NextSlice returns the job's next verified slice, waiting if it is not there yet.
     *
     * A slice the prefetch could not get is answered by its error, in its place; the job goes on
     * with the next slice.
     *
     * Errors:
     *   INVALID_ARGUMENT JOB_ID_MISSING, BAD_JOB_ID: job_id is empty, or not 1-64 letters, digits,
     *     '.', '_' or '-' (JobService's rule for job ids).
     *   NOT_FOUND JOB_NOT_OPEN: the job is not open here (after a DataFetcher restart too): OpenJob
     *     again.
     *   FAILED_PRECONDITION JOB_CLOSED: the job was closed while the call waited.
     *   UNAVAILABLE FETCHER_STOPPING: the DataFetcher stopped while the call waited.
     *   UNAVAILABLE UPSTREAM_UNAVAILABLE: the scheduler's AssignSlice did not answer, retries
     *     included.
     *   FAILED_PRECONDITION UPSTREAM_REFUSED: the scheduler or the data node refused (metadata
     *     "upstream_code", "upstream_reason").
     *   FAILED_PRECONDITION BAD_ASSIGNMENT: the scheduler's assignment is unusable.
     *   FAILED_PRECONDITION SLICE_LARGER_THAN_CACHE: the slice is bigger than
     *     data_fetcher.cache_bytes.
     *   UNAVAILABLE DATA_NODE_UNAVAILABLE: the data node failed several attempts in a row without
     *     progress.
     *   RESOURCE_EXHAUSTED CACHE_WRITE_FAILED: the slice could not be written into the cache: the
     *     disk is full.
     *   FAILED_PRECONDITION CACHE_WRITE_FAILED: the slice could not be written into the cache for
     *     another reason (permissions, a read-only or failing file system; metadata "errno").
     *   DATA_LOSS SLICE_SHA256_MISMATCH: the slice failed verification twice.
     *   INTERNAL PREFETCH_FAILED: the prefetch failed unexpectedly (see the DataFetcher's log).
     */
    readonly nextSlice: {
        readonly path: "/tendril.data.v1.DataFetcherService/NextSlice";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: NextSliceRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => NextSliceRequest;
        readonly responseSerialize: (value: NextSliceResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => NextSliceResponse;
    };
    /**
     * CloseJob stops fetching for a job.
     *
     * Errors:
     *   INVALID_ARGUMENT JOB_ID_MISSING, BAD_JOB_ID: job_id is empty, or not 1-64 letters, digits,
     *     '.', '_' or '-' (JobService's rule for job ids).
     *   NOT_FOUND JOB_NOT_OPEN: the job is not open here.
     */
    readonly closeJob: {
        readonly path: "/tendril.data.v1.DataFetcherService/CloseJob";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: CloseJobRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => CloseJobRequest;
        readonly responseSerialize: (value: CloseJobResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => CloseJobResponse;
    };
    /**
     * GetStats returns cache and transfer counters.
     *
     * Errors: none of its own.
     */
    readonly getStats: {
        readonly path: "/tendril.data.v1.DataFetcherService/GetStats";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetStatsRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetStatsRequest;
        readonly responseSerialize: (value: GetStatsResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetStatsResponse;
    };
};
export interface DataFetcherServiceServer extends UntypedServiceImplementation {
    /**
     * OpenJob starts fetching for a job (called by the job's bridge).
     *
     * Errors:
     *   INVALID_ARGUMENT JOB_ID_MISSING, BAD_JOB_ID: job_id is empty, or not 1-64 letters, digits,
     *     '.', '_' or '-' (JobService's rule for job ids).
     *   INVALID_ARGUMENT WORKER_ID_MISSING, COORDINATOR_MISSING: worker_id or coordinator_address is
     *     empty.
     *   INVALID_ARGUMENT BAD_WORKER_ID: worker_id is not a peer id (1-128 letters, digits, '.', '_',
     *     '-', ':' or '@', starting with a letter or digit).
     *   INVALID_ARGUMENT BAD_COORDINATOR_ADDRESS: coordinator_address is not host:port (or
     *     unix:PATH).
     *   INVALID_ARGUMENT BAD_PREFETCH: prefetch is outside 0..32.
     *   ALREADY_EXISTS JOB_ALREADY_OPEN: the job is open with another scheduler or worker; CloseJob
     *     it first.
     */
    openJob: handleUnaryCall<OpenJobRequest, OpenJobResponse>;
    /**
     * NextSlice returns the job's next verified slice, waiting if it is not there yet.
     *
     * A slice the prefetch could not get is answered by its error, in its place; the job goes on
     * with the next slice.
     *
     * Errors:
     *   INVALID_ARGUMENT JOB_ID_MISSING, BAD_JOB_ID: job_id is empty, or not 1-64 letters, digits,
     *     '.', '_' or '-' (JobService's rule for job ids).
     *   NOT_FOUND JOB_NOT_OPEN: the job is not open here (after a DataFetcher restart too): OpenJob
     *     again.
     *   FAILED_PRECONDITION JOB_CLOSED: the job was closed while the call waited.
     *   UNAVAILABLE FETCHER_STOPPING: the DataFetcher stopped while the call waited.
     *   UNAVAILABLE UPSTREAM_UNAVAILABLE: the scheduler's AssignSlice did not answer, retries
     *     included.
     *   FAILED_PRECONDITION UPSTREAM_REFUSED: the scheduler or the data node refused (metadata
     *     "upstream_code", "upstream_reason").
     *   FAILED_PRECONDITION BAD_ASSIGNMENT: the scheduler's assignment is unusable.
     *   FAILED_PRECONDITION SLICE_LARGER_THAN_CACHE: the slice is bigger than
     *     data_fetcher.cache_bytes.
     *   UNAVAILABLE DATA_NODE_UNAVAILABLE: the data node failed several attempts in a row without
     *     progress.
     *   RESOURCE_EXHAUSTED CACHE_WRITE_FAILED: the slice could not be written into the cache: the
     *     disk is full.
     *   FAILED_PRECONDITION CACHE_WRITE_FAILED: the slice could not be written into the cache for
     *     another reason (permissions, a read-only or failing file system; metadata "errno").
     *   DATA_LOSS SLICE_SHA256_MISMATCH: the slice failed verification twice.
     *   INTERNAL PREFETCH_FAILED: the prefetch failed unexpectedly (see the DataFetcher's log).
     */
    nextSlice: handleUnaryCall<NextSliceRequest, NextSliceResponse>;
    /**
     * CloseJob stops fetching for a job.
     *
     * Errors:
     *   INVALID_ARGUMENT JOB_ID_MISSING, BAD_JOB_ID: job_id is empty, or not 1-64 letters, digits,
     *     '.', '_' or '-' (JobService's rule for job ids).
     *   NOT_FOUND JOB_NOT_OPEN: the job is not open here.
     */
    closeJob: handleUnaryCall<CloseJobRequest, CloseJobResponse>;
    /**
     * GetStats returns cache and transfer counters.
     *
     * Errors: none of its own.
     */
    getStats: handleUnaryCall<GetStatsRequest, GetStatsResponse>;
}
export interface DataFetcherServiceClient extends Client {
    /**
     * OpenJob starts fetching for a job (called by the job's bridge).
     *
     * Errors:
     *   INVALID_ARGUMENT JOB_ID_MISSING, BAD_JOB_ID: job_id is empty, or not 1-64 letters, digits,
     *     '.', '_' or '-' (JobService's rule for job ids).
     *   INVALID_ARGUMENT WORKER_ID_MISSING, COORDINATOR_MISSING: worker_id or coordinator_address is
     *     empty.
     *   INVALID_ARGUMENT BAD_WORKER_ID: worker_id is not a peer id (1-128 letters, digits, '.', '_',
     *     '-', ':' or '@', starting with a letter or digit).
     *   INVALID_ARGUMENT BAD_COORDINATOR_ADDRESS: coordinator_address is not host:port (or
     *     unix:PATH).
     *   INVALID_ARGUMENT BAD_PREFETCH: prefetch is outside 0..32.
     *   ALREADY_EXISTS JOB_ALREADY_OPEN: the job is open with another scheduler or worker; CloseJob
     *     it first.
     */
    openJob(request: OpenJobRequest, callback: (error: ServiceError | null, response: OpenJobResponse) => void): ClientUnaryCall;
    openJob(request: OpenJobRequest, metadata: Metadata, callback: (error: ServiceError | null, response: OpenJobResponse) => void): ClientUnaryCall;
    openJob(request: OpenJobRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: OpenJobResponse) => void): ClientUnaryCall;
    /**
     * NextSlice returns the job's next verified slice, waiting if it is not there yet.
     *
     * A slice the prefetch could not get is answered by its error, in its place; the job goes on
     * with the next slice.
     *
     * Errors:
     *   INVALID_ARGUMENT JOB_ID_MISSING, BAD_JOB_ID: job_id is empty, or not 1-64 letters, digits,
     *     '.', '_' or '-' (JobService's rule for job ids).
     *   NOT_FOUND JOB_NOT_OPEN: the job is not open here (after a DataFetcher restart too): OpenJob
     *     again.
     *   FAILED_PRECONDITION JOB_CLOSED: the job was closed while the call waited.
     *   UNAVAILABLE FETCHER_STOPPING: the DataFetcher stopped while the call waited.
     *   UNAVAILABLE UPSTREAM_UNAVAILABLE: the scheduler's AssignSlice did not answer, retries
     *     included.
     *   FAILED_PRECONDITION UPSTREAM_REFUSED: the scheduler or the data node refused (metadata
     *     "upstream_code", "upstream_reason").
     *   FAILED_PRECONDITION BAD_ASSIGNMENT: the scheduler's assignment is unusable.
     *   FAILED_PRECONDITION SLICE_LARGER_THAN_CACHE: the slice is bigger than
     *     data_fetcher.cache_bytes.
     *   UNAVAILABLE DATA_NODE_UNAVAILABLE: the data node failed several attempts in a row without
     *     progress.
     *   RESOURCE_EXHAUSTED CACHE_WRITE_FAILED: the slice could not be written into the cache: the
     *     disk is full.
     *   FAILED_PRECONDITION CACHE_WRITE_FAILED: the slice could not be written into the cache for
     *     another reason (permissions, a read-only or failing file system; metadata "errno").
     *   DATA_LOSS SLICE_SHA256_MISMATCH: the slice failed verification twice.
     *   INTERNAL PREFETCH_FAILED: the prefetch failed unexpectedly (see the DataFetcher's log).
     */
    nextSlice(request: NextSliceRequest, callback: (error: ServiceError | null, response: NextSliceResponse) => void): ClientUnaryCall;
    nextSlice(request: NextSliceRequest, metadata: Metadata, callback: (error: ServiceError | null, response: NextSliceResponse) => void): ClientUnaryCall;
    nextSlice(request: NextSliceRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: NextSliceResponse) => void): ClientUnaryCall;
    /**
     * CloseJob stops fetching for a job.
     *
     * Errors:
     *   INVALID_ARGUMENT JOB_ID_MISSING, BAD_JOB_ID: job_id is empty, or not 1-64 letters, digits,
     *     '.', '_' or '-' (JobService's rule for job ids).
     *   NOT_FOUND JOB_NOT_OPEN: the job is not open here.
     */
    closeJob(request: CloseJobRequest, callback: (error: ServiceError | null, response: CloseJobResponse) => void): ClientUnaryCall;
    closeJob(request: CloseJobRequest, metadata: Metadata, callback: (error: ServiceError | null, response: CloseJobResponse) => void): ClientUnaryCall;
    closeJob(request: CloseJobRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: CloseJobResponse) => void): ClientUnaryCall;
    /**
     * GetStats returns cache and transfer counters.
     *
     * Errors: none of its own.
     */
    getStats(request: GetStatsRequest, callback: (error: ServiceError | null, response: GetStatsResponse) => void): ClientUnaryCall;
    getStats(request: GetStatsRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetStatsResponse) => void): ClientUnaryCall;
    getStats(request: GetStatsRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetStatsResponse) => void): ClientUnaryCall;
}
export declare const DataFetcherServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): DataFetcherServiceClient;
    service: typeof DataFetcherServiceService;
    serviceName: string;
};
type Builtin = Date | Function | Uint8Array | string | number | boolean | undefined;
type DeepPartial<T> = T extends Builtin ? T : T extends globalThis.Array<infer U> ? globalThis.Array<DeepPartial<U>> : T extends ReadonlyArray<infer U> ? ReadonlyArray<DeepPartial<U>> : T extends {} ? {
    [K in keyof T]?: DeepPartial<T[K]>;
} : Partial<T>;
type KeysOfUnion<T> = T extends T ? keyof T : never;
type Exact<P, I extends P> = P extends Builtin ? P : P & {
    [K in keyof P]: Exact<P[K], I[K]>;
} & {
    [K in Exclude<keyof I, KeysOfUnion<P>>]: never;
};
interface MessageFns<T> {
    encode(message: T, writer?: BinaryWriter): BinaryWriter;
    decode(input: BinaryReader | Uint8Array, length?: number): T;
    fromJSON(object: any): T;
    toJSON(message: T): unknown;
    create<I extends Exact<DeepPartial<T>, I>>(base?: I): T;
    fromPartial<I extends Exact<DeepPartial<T>, I>>(object: I): T;
}
export {};
