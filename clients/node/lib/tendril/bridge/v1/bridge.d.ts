import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type handleServerStreamingCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { ExecutorRef } from "../../common/v1/common";
import { RoundStatus } from "../../paramserver/v1/paramserver";
import { ReportProgressRequest as ReportProgressRequest1, ReportProgressResponse as ReportProgressResponse2, SliceAssignment } from "../../scheduler/v1/scheduler";
import { Codec, Digest } from "../../tensor/v1/tensor";
/** GetJobRequest is empty. */
export interface GetJobRequest {
}
/** GetJobResponse describes the job. */
export interface GetJobResponse {
    /** Job id. */
    jobId: string;
    /** Worker id. */
    workerId: string;
    /** Executor. */
    executor: ExecutorRef | undefined;
    /** Configuration from the dispatch. */
    config: {
        [key: string]: any;
    } | undefined;
    /** Absolute path of the work dir (for information; use relative paths in requests). */
    workDir: string;
    /**
     * The folder, relative to the work dir, whose files are the job's results ("results"): the
     * JobService keeps them when the job ends and its owner fetches them (JobService
     * ListResults/FetchResult). Also in env TENDRIL_RESULTS_DIR.
     */
    resultsDir: string;
}
/** FetchResourceRequest names a resource. */
export interface FetchResourceRequest {
    /** file:///abs/path, http(s)://... or tendril-data://<dataset_id>/<asset name> URI. */
    uri: string;
    /** Destination relative to artifacts/; empty uses the URI's file name. */
    dest: string;
    /** Expected hex sha256; when set, a mismatch fails the call and keeps nothing. */
    sha256: string;
}
/** FetchResourceResponse tells where the file is. */
export interface FetchResourceResponse {
    /** Path relative to the work dir. */
    path: string;
    /** Size in bytes. */
    sizeBytes: number;
    /** Hex sha256. */
    sha256: string;
}
/** NextSliceRequest is empty. */
export interface NextSliceRequest {
}
/** NextSliceResponse tells where the slice is. */
export interface NextSliceResponse {
    /** Path relative to the work dir of a read-only copy or link of the slice. */
    path: string;
    /** The slice's assignment. */
    assignment: SliceAssignment | undefined;
    /** Seconds this call waited for data (0 when prefetched). */
    waitSeconds: number;
}
/** SendUpdateRequest names the file to send. */
export interface SendUpdateRequest {
    /** SafeTensors file relative to the work dir. */
    path: string;
    /** Round the update belongs to. */
    round: number;
    /** Weight of the update (samples processed this round). */
    weight: number;
    /**
     * Streaming sync: the fragment of θ this call is about. The parameter server's run addressed
     * is then "<config.run_id>-f<fragment>" (each fragment of θ is a run of its own); unset means
     * the job's run itself. Must be below the job's config.fragments.
     */
    fragment?: number | undefined;
    /**
     * The digest of the whole file at path, as its writer computed it while writing it: the
     * bridge then sends the file without reading it through first, and the parameter server
     * checks every byte it receives against it (a wrong digest fails the push with DATA_LOSS).
     * Used when the file goes as it is (the job's codec is fp32 and so is the file); unset: the
     * bridge hashes the file.
     */
    digest: Digest | undefined;
}
/** SendUpdateResponse reports the transfer. */
export interface SendUpdateResponse {
    /** Bytes sent over the network (after the codec). */
    bytesSent: number;
    /** Seconds the transfer took. */
    seconds: number;
}
/** ReceiveUpdateRequest names the round. */
export interface ReceiveUpdateRequest {
    /** Round whose outer update is wanted. */
    round: number;
    /** Destination relative to the work dir; empty means "updates/round-<n>.safetensors". */
    path: string;
    /**
     * Seconds to wait at most; unset means the job's configured round timeout, 0 means do not
     * wait (answer the update if the round closed already, else ROUND_STILL_OPEN at once).
     */
    timeoutSeconds?: number | undefined;
    /**
     * Streaming sync: the fragment of θ this call is about. The parameter server's run addressed
     * is then "<config.run_id>-f<fragment>" (each fragment of θ is a run of its own); unset means
     * the job's run itself. Must be below the job's config.fragments.
     */
    fragment?: number | undefined;
    /**
     * The executor keeps nothing of an update (no mapping of its file, no open descriptor) once
     * the path it was given is gone and it asked for a later one: the bridge may then receive
     * the update into a file it kept from an earlier call, in place (the file's pages are reused,
     * which saves the kernel's page work on every model-sized update), and link it at `path`;
     * only where the work dir is on a file system held in memory (tmpfs), since on a disk the
     * kept file's pages would be written back every round. Unset: a new file every call. Either
     * way `path` appears only once the update is whole.
     */
    reuseFiles: boolean;
}
/** ReceiveUpdateResponse tells where the update is. */
export interface ReceiveUpdateResponse {
    /** Path relative to the work dir of the update (fp32 SafeTensors, θnew = θ + u). */
    path: string;
    /** Bytes received over the network. */
    bytesReceived: number;
    /** Seconds spent waiting and receiving. */
    seconds: number;
    /** Workers whose updates made up the round. */
    contributors: number;
}
/** ReportProgressRequest is one progress event (job and worker are filled in by the bridge). */
export interface ReportProgressRequest {
    /** The event. */
    progress: ReportProgressRequest1 | undefined;
}
/** ReportProgressResponse carries the scheduler's directive. */
export interface ReportProgressResponse {
    /** The directive. */
    directive: ReportProgressResponse2 | undefined;
}
/** PublishParametersRequest names the parameter file. */
export interface PublishParametersRequest {
    /** SafeTensors file relative to the work dir. */
    path: string;
    /**
     * Streaming sync: the fragment of θ this call is about. The parameter server's run addressed
     * is then "<config.run_id>-f<fragment>" (each fragment of θ is a run of its own); unset means
     * the job's run itself. Must be below the job's config.fragments.
     */
    fragment?: number | undefined;
}
/** PublishParametersResponse tells whether the offer was taken. */
export interface PublishParametersResponse {
    /** True when these parameters became the run's θ0. */
    accepted: boolean;
    /** The run's current round. */
    round: number;
}
/** FetchParametersRequest names the destination. */
export interface FetchParametersRequest {
    /** Destination relative to the work dir; empty means "params/current.safetensors". */
    path: string;
    /**
     * Streaming sync: the fragment of θ this call is about. The parameter server's run addressed
     * is then "<config.run_id>-f<fragment>" (each fragment of θ is a run of its own); unset means
     * the job's run itself. Must be below the job's config.fragments.
     */
    fragment?: number | undefined;
}
/** FetchParametersResponse tells where θ is. */
export interface FetchParametersResponse {
    /** Path relative to the work dir (fp32 SafeTensors). */
    path: string;
    /** Round these parameters start. */
    round: number;
}
/** OpenRunRequest carries the aggregation settings of the job's run (from its dispatch config). */
export interface OpenRunRequest {
    /** The run; empty means the job's config.run_id, anything else must equal it. */
    runId: string;
    /** Number of workers expected to push each round (at least 1). */
    expectedWorkers: number;
    /** Fewest committed workers that may close a round once round_timeout_seconds passed; 0 means 1. */
    quorum: number;
    /**
     * Seconds after the first commit of a round after which a quorum closes it; 0 means no
     * timeout (every expected worker must commit).
     */
    roundTimeoutSeconds: number;
    /** Outer learning rate; unset means 0.7 (0 is a learning rate of 0). */
    outerLr?: number | undefined;
    /** Outer Nesterov momentum in [0, 1); unset means 0.9, 0 means plain SGD outer steps. */
    outerMomentum?: number | undefined;
    /** Codec the update is served in by default; unset means fp32. */
    codec: Codec;
    /** Number of rounds; 0 means unbounded. */
    rounds: number;
}
/** OpenRunResponse tells where the run stands. */
export interface OpenRunResponse {
    /** The run opened. */
    runId: string;
    /** Current round (non-zero when resumed). */
    round: number;
    /** True when the parameter server resumed the run from its saved state. */
    resumed: boolean;
}
/** WatchRunRequest names the run to watch. */
export interface WatchRunRequest {
    /** The run; empty means the job's config.run_id, anything else must equal it. */
    runId: string;
}
/** WatchRunResponse is one state of the run's current round. */
export interface WatchRunResponse {
    /** The state, as the parameter server reports it. */
    status: RoundStatus | undefined;
}
/** CloseRunRequest names the run to close. */
export interface CloseRunRequest {
    /** The run; empty means the job's config.run_id, anything else must equal it. */
    runId: string;
}
/** CloseRunResponse is empty. */
export interface CloseRunResponse {
}
export declare const GetJobRequest: MessageFns<GetJobRequest>;
export declare const GetJobResponse: MessageFns<GetJobResponse>;
export declare const FetchResourceRequest: MessageFns<FetchResourceRequest>;
export declare const FetchResourceResponse: MessageFns<FetchResourceResponse>;
export declare const NextSliceRequest: MessageFns<NextSliceRequest>;
export declare const NextSliceResponse: MessageFns<NextSliceResponse>;
export declare const SendUpdateRequest: MessageFns<SendUpdateRequest>;
export declare const SendUpdateResponse: MessageFns<SendUpdateResponse>;
export declare const ReceiveUpdateRequest: MessageFns<ReceiveUpdateRequest>;
export declare const ReceiveUpdateResponse: MessageFns<ReceiveUpdateResponse>;
export declare const ReportProgressRequest: MessageFns<ReportProgressRequest>;
export declare const ReportProgressResponse: MessageFns<ReportProgressResponse>;
export declare const PublishParametersRequest: MessageFns<PublishParametersRequest>;
export declare const PublishParametersResponse: MessageFns<PublishParametersResponse>;
export declare const FetchParametersRequest: MessageFns<FetchParametersRequest>;
export declare const FetchParametersResponse: MessageFns<FetchParametersResponse>;
export declare const OpenRunRequest: MessageFns<OpenRunRequest>;
export declare const OpenRunResponse: MessageFns<OpenRunResponse>;
export declare const WatchRunRequest: MessageFns<WatchRunRequest>;
export declare const WatchRunResponse: MessageFns<WatchRunResponse>;
export declare const CloseRunRequest: MessageFns<CloseRunRequest>;
export declare const CloseRunResponse: MessageFns<CloseRunResponse>;
/**
 * JobBridgeService is what an executor talks to: one per job, on the Unix socket
 * bridge.sock in the job's work dir, guarded by the job's token (metadata
 * "authorization: Bearer <token>", token in env TENDRIL_BRIDGE_TOKEN). Files are exchanged
 * by path relative to the work dir, never as raw bytes over the socket.
 *
 * Errors are rich statuses: the stable reason is the ErrorInfo.reason in the trailer
 * grpc-status-details-bin (the Python SDK names every one in tendril_sdk.BridgeReason). A
 * failure of a service behind the bridge (DataFetcher, parameter server, scheduler) keeps that
 * service's status code (CANCELLED and UNKNOWN, which mean the call broke off, become
 * UNAVAILABLE; UNIMPLEMENTED becomes FAILED_PRECONDITION) and reason; each RPC lists those an executor meets. When the service
 * gave no reason, or could not be reached, the reason is REMOTE_<CODE> with the service's code,
 * as below. UNAVAILABLE always means "try again shortly". Every RPC may answer these besides
 * its own:
 *
 * Errors:
 *   UNAUTHENTICATED BAD_BRIDGE_TOKEN: no "authorization: Bearer <token>" metadata, or a wrong
 *     token.
 *   INVALID_ARGUMENT PATH_NOT_CONFINED: a path is empty, absolute, has ".." or a NUL byte, or
 *     leaves the work dir.
 *   UNAVAILABLE REMOTE_CANCELLED: the service's call was cancelled (it is stopping); retry.
 *   UNAVAILABLE REMOTE_UNKNOWN: the service failed without saying how (the call broke off);
 *     retry.
 *   INVALID_ARGUMENT REMOTE_INVALID_ARGUMENT: the service refused the bridge's request.
 *   DEADLINE_EXCEEDED REMOTE_DEADLINE_EXCEEDED: the service did not answer in time.
 *   NOT_FOUND REMOTE_NOT_FOUND: the service does not know what was asked for.
 *   ALREADY_EXISTS REMOTE_ALREADY_EXISTS: the service already has what was sent.
 *   PERMISSION_DENIED REMOTE_PERMISSION_DENIED: the service does not accept this worker.
 *   RESOURCE_EXHAUSTED REMOTE_RESOURCE_EXHAUSTED: the service is overloaded or a message was too
 *     large.
 *   FAILED_PRECONDITION REMOTE_FAILED_PRECONDITION: the service is not in a state to do it.
 *   ABORTED REMOTE_ABORTED: the service gave the call up (a newer call took over); retry.
 *   OUT_OF_RANGE REMOTE_OUT_OF_RANGE: the service found a value out of range.
 *   FAILED_PRECONDITION REMOTE_UNIMPLEMENTED: the address in the job's config is not the service it
 *     should be.
 *   INTERNAL REMOTE_INTERNAL: the service failed (or the connection broke mid-call).
 *   UNAVAILABLE REMOTE_UNAVAILABLE: the service cannot be reached; retry.
 *   DATA_LOSS REMOTE_DATA_LOSS: the service lost or damaged data.
 *   UNAUTHENTICATED REMOTE_UNAUTHENTICATED: the service did not accept the worker's credentials.
 *   INTERNAL BRIDGE_SOCKET_FAILED: the bridge could not listen on its socket; no executor can
 *     call it then, so JobService answers Dispatch with it.
 *
 * A job of executor class "aggregate" runs its DiLoCo run on this worker's own parameter
 * server with OpenRun, WatchRun and CloseRun; the bridge knows that server's address. Such a
 * job has authority over exactly one run, the one its dispatch config names (config.run_id):
 * it may open (and reconfigure) it, watch it and close it, never purge it. A job cannot act on
 * a run its config does not name, and a job of another class cannot act on any run this way,
 * except that a job of class "eval" (a run's held-out evaluation) may watch the run its config
 * names at the parameter server its config names (config.parameter_server).
 */
export type JobBridgeServiceService = typeof JobBridgeServiceService;
export declare const JobBridgeServiceService: {
    /**
     * GetJob returns the job's description and configuration.
     *
     * Errors: none of its own.
     */
    readonly getJob: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/GetJob";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetJobRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetJobRequest;
        readonly responseSerialize: (value: GetJobResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetJobResponse;
    };
    /**
     * FetchResource downloads a file:// or http(s):// URI into artifacts/; nothing is kept after
     * any error. A file:// source must lie in the job's work dir or in one of the directories the
     * worker's operator listed in job.fetch_roots (none by default). A
     * tendril-data://<dataset_id>/<asset name> URI names an asset of a data set (e.g. a checkpoint
     * added with `tendril data add-model`): it is streamed from the data node at the job's
     * config.data_node and checked against the sha256 that node's manifest lists. A resource
     * fetched with its sha256 (and every data node asset) is kept in the worker's resource cache:
     * a later fetch of the same sha256, by any job on the worker, is a read-only hard link to the
     * cached file (hashed again first), not a download.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_URI: uri is not file:///absolute/path, http://, https:// or
     *     tendril-data://<dataset_id>/<asset name> (plain names), or names a directory.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: a tendril-data:// URI, and the job's config has no
     *     data_node.
     *   NOT_FOUND ASSET_NOT_FOUND: the data node serves another data set, or its manifest lists no
     *     asset of that name.
     *   UNAVAILABLE DATA_NODE_UNREACHABLE: the data node of a tendril-data:// URI does not answer;
     *     retry.
     *   INVALID_ARGUMENT BAD_SHA256: sha256 is not 64 hex digits.
     *   INVALID_ARGUMENT BAD_DEST: the URI ends without a file name and dest is empty.
     *   NOT_FOUND RESOURCE_NOT_FOUND: the file:// source does not exist.
     *   PERMISSION_DENIED RESOURCE_OUTSIDE_ROOTS: the file:// source (symbolic links followed) is
     *     neither in the job's work dir nor in a directory of the worker's job.fetch_roots.
     *   PERMISSION_DENIED RESOURCE_FORBIDDEN: the worker may not read the file:// source.
     *   NOT_FOUND RESOURCE_HTTP_ERROR: the server answered HTTP 404 or 410.
     *   PERMISSION_DENIED RESOURCE_HTTP_ERROR: the server answered HTTP 401 or 403.
     *   UNAVAILABLE RESOURCE_HTTP_ERROR: the server answered HTTP 5xx; retry.
     *   FAILED_PRECONDITION RESOURCE_HTTP_ERROR: the server answered another HTTP error status.
     *   UNAVAILABLE RESOURCE_UNREACHABLE: cannot connect to the URI's host.
     *   UNAVAILABLE RESOURCE_TRANSFER: the download (or the data node's stream) broke off; retry.
     *   RESOURCE_EXHAUSTED RESOURCE_TRANSFER: the download broke off because the disk is full.
     *   DATA_LOSS SHA256_MISMATCH: the bytes do not have the expected sha256 (for a tendril-data://
     *     URI: the one the manifest lists, which must equal the sha256 given).
     */
    readonly fetchResource: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/FetchResource";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: FetchResourceRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => FetchResourceRequest;
        readonly responseSerialize: (value: FetchResourceResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => FetchResourceResponse;
    };
    /**
     * NextSlice returns the path of the next (prefetched) data slice. The reasons after the first
     * two are the DataFetcher's.
     *
     * Errors:
     *   FAILED_PRECONDITION NO_SCHEDULER: the job was dispatched without a scheduler.
     *   UNAVAILABLE SLICE_MISSING: the cached slice vanished before it was linked; call again.
     *   UNAVAILABLE FETCHER_STOPPING, UPSTREAM_UNAVAILABLE, DATA_NODE_UNAVAILABLE: the DataFetcher
     *     is stopping, or the scheduler or the data node cannot be reached; retry.
     *   NOT_FOUND JOB_NOT_OPEN: the DataFetcher lost the job again right after the bridge reopened
     *     it; retry.
     *   FAILED_PRECONDITION JOB_CLOSED: the job was closed at the DataFetcher; no more slices for it.
     *   FAILED_PRECONDITION UPSTREAM_REFUSED: the scheduler refused to assign a slice (its reason
     *     in metadata "upstream_reason").
     *   FAILED_PRECONDITION BAD_ASSIGNMENT, SLICE_LARGER_THAN_CACHE: the scheduler's assignment is
     *     unusable, or the slice is bigger than the worker's slice cache.
     *   DATA_LOSS SLICE_SHA256_MISMATCH: the slice arrived damaged twice; call again for the next
     *     one.
     *   RESOURCE_EXHAUSTED CACHE_WRITE_FAILED: the worker's disk is full.
     *   FAILED_PRECONDITION CACHE_WRITE_FAILED: the worker's slice cache cannot be written
     *     (permissions, file system); its operator must act.
     *   INTERNAL PREFETCH_FAILED: the DataFetcher's prefetch failed unexpectedly.
     */
    readonly nextSlice: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/NextSlice";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: NextSliceRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => NextSliceRequest;
        readonly responseSerialize: (value: NextSliceResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => NextSliceResponse;
    };
    /**
     * SendUpdate streams a pseudo-gradient file to the job's parameter server. The reasons after
     * JOB_CONFIG_BAD are the parameter server's and the bridge's sending.
     *
     * Errors:
     *   NOT_FOUND FILE_NOT_FOUND: path is not a file in the work dir.
     *   INVALID_ARGUMENT BAD_WEIGHT: weight is not a finite number > 0.
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   INVALID_ARGUMENT BAD_FILE: the file is not a SafeTensors file of floating tensors.
     *   INVALID_ARGUMENT BAD_DIGEST: digest is set with an unknown algorithm or hex digits that
     *     are not the algorithm's.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no parameter_server or run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_BAD: the job's config names an unknown codec, or a
     *     codec_block_size the codec cannot use.
     *   NOT_FOUND RUN_NOT_OPEN: the run's aggregate job has not opened it yet; retry.
     *   FAILED_PRECONDITION ROUND_CLOSED, ROUND_NOT_OPEN: the round closed without this update, or
     *     is not open yet: FetchParameters and join the open round.
     *   FAILED_PRECONDITION RUN_FINISHED, RUN_CLOSED: the run's last round is over, or the run was
     *     closed.
     *   FAILED_PRECONDITION NO_PARAMETERS: nobody published θ0 for the run yet.
     *   ALREADY_EXISTS ALREADY_COMMITTED: this worker's update of the round already counts (e.g. a
     *     retried send).
     *   INVALID_ARGUMENT LAYOUT_MISMATCH, NON_FINITE_UPDATE: the tensors differ from θ0's, or hold
     *     NaN or Inf.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the update arrived damaged; send it again.
     *   UNAVAILABLE PUSH_STALLED: the parameter server took no byte of several resumed sends; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     *   INTERNAL NOT_COMMITTED: the parameter server took the whole update without counting it.
     */
    readonly sendUpdate: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/SendUpdate";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: SendUpdateRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SendUpdateRequest;
        readonly responseSerialize: (value: SendUpdateResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SendUpdateResponse;
    };
    /**
     * ReceiveUpdate waits for the outer update of a round and stores it in the work dir. The
     * reasons after JOB_CONFIG_MISSING and JOB_CONFIG_BAD are the parameter server's and the
     * bridge's receiving; nothing is kept after any error. When the parameter server lost this
     * worker's committed update of the round (it restarted before the round closed), the bridge
     * sends the update of its last SendUpdate of the round again and goes on waiting.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_TIMEOUT: timeout_seconds is negative, NaN or infinite.
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING, JOB_CONFIG_BAD: as for SendUpdate.
     *   DEADLINE_EXCEEDED ROUND_STILL_OPEN: the round did not close in time.
     *   FAILED_PRECONDITION UPDATE_GONE, ROUND_NOT_OPEN, RUN_CLOSED: the round's update is no longer
     *     kept, the round is not open yet, or the run was closed before the round did:
     *     FetchParameters and join the open round.
     *   FAILED_PRECONDITION PUSH_LOST: the parameter server lost this worker's update of the round
     *     and the bridge has no copy to send again (no SendUpdate of the round went through it):
     *     FetchParameters and join the open round.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open yet; retry.
     *   INTERNAL AGGREGATION_FAILED: the parameter server could not close the round.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the update arrived damaged.
     *   UNAVAILABLE PULL_CUT_SHORT: the parameter server's stream kept ending early; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     */
    readonly receiveUpdate: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/ReceiveUpdate";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ReceiveUpdateRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ReceiveUpdateRequest;
        readonly responseSerialize: (value: ReceiveUpdateResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ReceiveUpdateResponse;
    };
    /**
     * ReportProgress forwards progress to the scheduler and returns its directive. BATCH reports
     * are forwarded in the background; a failed forward is answered to the next report. The
     * reasons after NO_SCHEDULER are the reference scheduler's.
     *
     * Errors:
     *   FAILED_PRECONDITION NO_SCHEDULER: the job was dispatched without a scheduler.
     *   NOT_FOUND UNKNOWN_JOB: the run no longer counts this job: stop.
     *   FAILED_PRECONDITION STALE_ROUND: the report names a round older than one already reported.
     *   INVALID_ARGUMENT BAD_PROGRESS_KIND, BAD_BATCH: the report's kind is not set, or a BATCH
     *     report has batch_size 0.
     */
    readonly reportProgress: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/ReportProgress";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ReportProgressRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ReportProgressRequest;
        readonly responseSerialize: (value: ReportProgressResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ReportProgressResponse;
    };
    /**
     * PublishParameters offers initial parameters θ0 (a SafeTensors file) to the job's
     * parameter server; the first offer of a run wins. The reasons after JOB_CONFIG_MISSING are
     * the parameter server's and the bridge's sending.
     *
     * Errors:
     *   NOT_FOUND FILE_NOT_FOUND: path is not a file in the work dir.
     *   INVALID_ARGUMENT BAD_FILE: the file is not a SafeTensors file of floating tensors.
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no parameter_server or run_id.
     *   NOT_FOUND RUN_NOT_OPEN: the aggregate job has not opened the run yet; retry.
     *   FAILED_PRECONDITION RUN_CLOSED: the run was closed.
     *   INVALID_ARGUMENT NON_FINITE_PARAMETERS: θ0 holds NaN or Inf.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: θ0 arrived damaged; send it again.
     *   UNAVAILABLE PUSH_STALLED: the parameter server took no byte of several resumed sends; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     */
    readonly publishParameters: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/PublishParameters";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: PublishParametersRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PublishParametersRequest;
        readonly responseSerialize: (value: PublishParametersResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PublishParametersResponse;
    };
    /**
     * FetchParameters stores the parameter server's current θ in the work dir (join mid-run).
     * The reasons after JOB_CONFIG_MISSING are the parameter server's and the bridge's
     * receiving; nothing is kept after any error.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no parameter_server or run_id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open yet; retry.
     *   FAILED_PRECONDITION NO_PARAMETERS: nobody published θ0 for the run yet.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: θ arrived damaged.
     *   UNAVAILABLE PULL_CUT_SHORT: the parameter server's stream kept ending early; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     */
    readonly fetchParameters: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/FetchParameters";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: FetchParametersRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => FetchParametersRequest;
        readonly responseSerialize: (value: FetchParametersResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => FetchParametersResponse;
    };
    /**
     * OpenRun opens the job's run on this worker's parameter server with the aggregation settings
     * given (ParameterServerService.OpenJob): a new run starts at round 0, a run the server saved
     * resumes where it was, an open run takes the new settings. The bridge names the job's owner
     * (the scheduler that dispatched it) as the run's owner, the one peer that may then name the
     * run's expected workers (ParameterServerService.SetExpectedWorkers).
     *
     * Errors:
     *   PERMISSION_DENIED NOT_AGGREGATE_JOB: the job's executor class is not "aggregate".
     *   PERMISSION_DENIED RUN_NOT_OWNED: run_id names another run than the job's config.run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no run_id.
     *   INVALID_ARGUMENT BAD_RUN_ID: the job's run_id is not a valid run id (parameter server).
     *   INVALID_ARGUMENT BAD_CODEC: the codec is not a known value (parameter server).
     *   INVALID_ARGUMENT BAD_RUN_CONFIG: expected_workers, quorum, timeout, outer_lr or
     *     outer_momentum is out of range (parameter server).
     */
    readonly openRun: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/OpenRun";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: OpenRunRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => OpenRunRequest;
        readonly responseSerialize: (value: OpenRunResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => OpenRunResponse;
    };
    /**
     * WatchRun streams the job's run's round state as the parameter server reports it
     * (ParameterServerService.WatchRound): the state now, then one message per change; the stream
     * ends after the message whose run_state is RUN_STATE_FINISHED or RUN_STATE_CLOSED. After a
     * failure, watch again: every watch starts with the state now. An "aggregate" job watches
     * this worker's parameter server, an "eval" job the one its config.parameter_server names.
     *
     * Errors:
     *   PERMISSION_DENIED NOT_AGGREGATE_JOB: the job's executor class is neither "aggregate" nor
     *     "eval".
     *   PERMISSION_DENIED RUN_NOT_OWNED: run_id names another run than the job's config.run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no run_id (or, for an "eval"
     *     job, no parameter_server).
     *   NOT_FOUND RUN_NOT_OPEN: the parameter server does not have the run open (e.g. after a
     *     restart); OpenRun again.
     *   INTERNAL AGGREGATION_FAILED: closing a round failed; OpenRun resumes the run.
     *   ABORTED WATCH_OVERFLOW: the watch fell behind and was cut off; watch again.
     */
    readonly watchRun: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/WatchRun";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: WatchRunRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => WatchRunRequest;
        readonly responseSerialize: (value: WatchRunResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => WatchRunResponse;
    };
    /**
     * CloseRun closes the job's run on this worker's parameter server
     * (ParameterServerService.CloseJob): pushes are refused from then on, θ and the last updates
     * stay served, its state stays on disk (a later OpenRun resumes it).
     *
     * Errors:
     *   PERMISSION_DENIED NOT_AGGREGATE_JOB: the job's executor class is not "aggregate".
     *   PERMISSION_DENIED RUN_NOT_OWNED: run_id names another run than the job's config.run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no run_id.
     *   NOT_FOUND RUN_NOT_OPEN: the parameter server does not know the run.
     */
    readonly closeRun: {
        readonly path: "/tendril.bridge.v1.JobBridgeService/CloseRun";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: CloseRunRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => CloseRunRequest;
        readonly responseSerialize: (value: CloseRunResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => CloseRunResponse;
    };
};
export interface JobBridgeServiceServer extends UntypedServiceImplementation {
    /**
     * GetJob returns the job's description and configuration.
     *
     * Errors: none of its own.
     */
    getJob: handleUnaryCall<GetJobRequest, GetJobResponse>;
    /**
     * FetchResource downloads a file:// or http(s):// URI into artifacts/; nothing is kept after
     * any error. A file:// source must lie in the job's work dir or in one of the directories the
     * worker's operator listed in job.fetch_roots (none by default). A
     * tendril-data://<dataset_id>/<asset name> URI names an asset of a data set (e.g. a checkpoint
     * added with `tendril data add-model`): it is streamed from the data node at the job's
     * config.data_node and checked against the sha256 that node's manifest lists. A resource
     * fetched with its sha256 (and every data node asset) is kept in the worker's resource cache:
     * a later fetch of the same sha256, by any job on the worker, is a read-only hard link to the
     * cached file (hashed again first), not a download.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_URI: uri is not file:///absolute/path, http://, https:// or
     *     tendril-data://<dataset_id>/<asset name> (plain names), or names a directory.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: a tendril-data:// URI, and the job's config has no
     *     data_node.
     *   NOT_FOUND ASSET_NOT_FOUND: the data node serves another data set, or its manifest lists no
     *     asset of that name.
     *   UNAVAILABLE DATA_NODE_UNREACHABLE: the data node of a tendril-data:// URI does not answer;
     *     retry.
     *   INVALID_ARGUMENT BAD_SHA256: sha256 is not 64 hex digits.
     *   INVALID_ARGUMENT BAD_DEST: the URI ends without a file name and dest is empty.
     *   NOT_FOUND RESOURCE_NOT_FOUND: the file:// source does not exist.
     *   PERMISSION_DENIED RESOURCE_OUTSIDE_ROOTS: the file:// source (symbolic links followed) is
     *     neither in the job's work dir nor in a directory of the worker's job.fetch_roots.
     *   PERMISSION_DENIED RESOURCE_FORBIDDEN: the worker may not read the file:// source.
     *   NOT_FOUND RESOURCE_HTTP_ERROR: the server answered HTTP 404 or 410.
     *   PERMISSION_DENIED RESOURCE_HTTP_ERROR: the server answered HTTP 401 or 403.
     *   UNAVAILABLE RESOURCE_HTTP_ERROR: the server answered HTTP 5xx; retry.
     *   FAILED_PRECONDITION RESOURCE_HTTP_ERROR: the server answered another HTTP error status.
     *   UNAVAILABLE RESOURCE_UNREACHABLE: cannot connect to the URI's host.
     *   UNAVAILABLE RESOURCE_TRANSFER: the download (or the data node's stream) broke off; retry.
     *   RESOURCE_EXHAUSTED RESOURCE_TRANSFER: the download broke off because the disk is full.
     *   DATA_LOSS SHA256_MISMATCH: the bytes do not have the expected sha256 (for a tendril-data://
     *     URI: the one the manifest lists, which must equal the sha256 given).
     */
    fetchResource: handleUnaryCall<FetchResourceRequest, FetchResourceResponse>;
    /**
     * NextSlice returns the path of the next (prefetched) data slice. The reasons after the first
     * two are the DataFetcher's.
     *
     * Errors:
     *   FAILED_PRECONDITION NO_SCHEDULER: the job was dispatched without a scheduler.
     *   UNAVAILABLE SLICE_MISSING: the cached slice vanished before it was linked; call again.
     *   UNAVAILABLE FETCHER_STOPPING, UPSTREAM_UNAVAILABLE, DATA_NODE_UNAVAILABLE: the DataFetcher
     *     is stopping, or the scheduler or the data node cannot be reached; retry.
     *   NOT_FOUND JOB_NOT_OPEN: the DataFetcher lost the job again right after the bridge reopened
     *     it; retry.
     *   FAILED_PRECONDITION JOB_CLOSED: the job was closed at the DataFetcher; no more slices for it.
     *   FAILED_PRECONDITION UPSTREAM_REFUSED: the scheduler refused to assign a slice (its reason
     *     in metadata "upstream_reason").
     *   FAILED_PRECONDITION BAD_ASSIGNMENT, SLICE_LARGER_THAN_CACHE: the scheduler's assignment is
     *     unusable, or the slice is bigger than the worker's slice cache.
     *   DATA_LOSS SLICE_SHA256_MISMATCH: the slice arrived damaged twice; call again for the next
     *     one.
     *   RESOURCE_EXHAUSTED CACHE_WRITE_FAILED: the worker's disk is full.
     *   FAILED_PRECONDITION CACHE_WRITE_FAILED: the worker's slice cache cannot be written
     *     (permissions, file system); its operator must act.
     *   INTERNAL PREFETCH_FAILED: the DataFetcher's prefetch failed unexpectedly.
     */
    nextSlice: handleUnaryCall<NextSliceRequest, NextSliceResponse>;
    /**
     * SendUpdate streams a pseudo-gradient file to the job's parameter server. The reasons after
     * JOB_CONFIG_BAD are the parameter server's and the bridge's sending.
     *
     * Errors:
     *   NOT_FOUND FILE_NOT_FOUND: path is not a file in the work dir.
     *   INVALID_ARGUMENT BAD_WEIGHT: weight is not a finite number > 0.
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   INVALID_ARGUMENT BAD_FILE: the file is not a SafeTensors file of floating tensors.
     *   INVALID_ARGUMENT BAD_DIGEST: digest is set with an unknown algorithm or hex digits that
     *     are not the algorithm's.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no parameter_server or run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_BAD: the job's config names an unknown codec, or a
     *     codec_block_size the codec cannot use.
     *   NOT_FOUND RUN_NOT_OPEN: the run's aggregate job has not opened it yet; retry.
     *   FAILED_PRECONDITION ROUND_CLOSED, ROUND_NOT_OPEN: the round closed without this update, or
     *     is not open yet: FetchParameters and join the open round.
     *   FAILED_PRECONDITION RUN_FINISHED, RUN_CLOSED: the run's last round is over, or the run was
     *     closed.
     *   FAILED_PRECONDITION NO_PARAMETERS: nobody published θ0 for the run yet.
     *   ALREADY_EXISTS ALREADY_COMMITTED: this worker's update of the round already counts (e.g. a
     *     retried send).
     *   INVALID_ARGUMENT LAYOUT_MISMATCH, NON_FINITE_UPDATE: the tensors differ from θ0's, or hold
     *     NaN or Inf.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the update arrived damaged; send it again.
     *   UNAVAILABLE PUSH_STALLED: the parameter server took no byte of several resumed sends; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     *   INTERNAL NOT_COMMITTED: the parameter server took the whole update without counting it.
     */
    sendUpdate: handleUnaryCall<SendUpdateRequest, SendUpdateResponse>;
    /**
     * ReceiveUpdate waits for the outer update of a round and stores it in the work dir. The
     * reasons after JOB_CONFIG_MISSING and JOB_CONFIG_BAD are the parameter server's and the
     * bridge's receiving; nothing is kept after any error. When the parameter server lost this
     * worker's committed update of the round (it restarted before the round closed), the bridge
     * sends the update of its last SendUpdate of the round again and goes on waiting.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_TIMEOUT: timeout_seconds is negative, NaN or infinite.
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING, JOB_CONFIG_BAD: as for SendUpdate.
     *   DEADLINE_EXCEEDED ROUND_STILL_OPEN: the round did not close in time.
     *   FAILED_PRECONDITION UPDATE_GONE, ROUND_NOT_OPEN, RUN_CLOSED: the round's update is no longer
     *     kept, the round is not open yet, or the run was closed before the round did:
     *     FetchParameters and join the open round.
     *   FAILED_PRECONDITION PUSH_LOST: the parameter server lost this worker's update of the round
     *     and the bridge has no copy to send again (no SendUpdate of the round went through it):
     *     FetchParameters and join the open round.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open yet; retry.
     *   INTERNAL AGGREGATION_FAILED: the parameter server could not close the round.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the update arrived damaged.
     *   UNAVAILABLE PULL_CUT_SHORT: the parameter server's stream kept ending early; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     */
    receiveUpdate: handleUnaryCall<ReceiveUpdateRequest, ReceiveUpdateResponse>;
    /**
     * ReportProgress forwards progress to the scheduler and returns its directive. BATCH reports
     * are forwarded in the background; a failed forward is answered to the next report. The
     * reasons after NO_SCHEDULER are the reference scheduler's.
     *
     * Errors:
     *   FAILED_PRECONDITION NO_SCHEDULER: the job was dispatched without a scheduler.
     *   NOT_FOUND UNKNOWN_JOB: the run no longer counts this job: stop.
     *   FAILED_PRECONDITION STALE_ROUND: the report names a round older than one already reported.
     *   INVALID_ARGUMENT BAD_PROGRESS_KIND, BAD_BATCH: the report's kind is not set, or a BATCH
     *     report has batch_size 0.
     */
    reportProgress: handleUnaryCall<ReportProgressRequest, ReportProgressResponse>;
    /**
     * PublishParameters offers initial parameters θ0 (a SafeTensors file) to the job's
     * parameter server; the first offer of a run wins. The reasons after JOB_CONFIG_MISSING are
     * the parameter server's and the bridge's sending.
     *
     * Errors:
     *   NOT_FOUND FILE_NOT_FOUND: path is not a file in the work dir.
     *   INVALID_ARGUMENT BAD_FILE: the file is not a SafeTensors file of floating tensors.
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no parameter_server or run_id.
     *   NOT_FOUND RUN_NOT_OPEN: the aggregate job has not opened the run yet; retry.
     *   FAILED_PRECONDITION RUN_CLOSED: the run was closed.
     *   INVALID_ARGUMENT NON_FINITE_PARAMETERS: θ0 holds NaN or Inf.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: θ0 arrived damaged; send it again.
     *   UNAVAILABLE PUSH_STALLED: the parameter server took no byte of several resumed sends; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     */
    publishParameters: handleUnaryCall<PublishParametersRequest, PublishParametersResponse>;
    /**
     * FetchParameters stores the parameter server's current θ in the work dir (join mid-run).
     * The reasons after JOB_CONFIG_MISSING are the parameter server's and the bridge's
     * receiving; nothing is kept after any error.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no parameter_server or run_id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open yet; retry.
     *   FAILED_PRECONDITION NO_PARAMETERS: nobody published θ0 for the run yet.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: θ arrived damaged.
     *   UNAVAILABLE PULL_CUT_SHORT: the parameter server's stream kept ending early; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     */
    fetchParameters: handleUnaryCall<FetchParametersRequest, FetchParametersResponse>;
    /**
     * OpenRun opens the job's run on this worker's parameter server with the aggregation settings
     * given (ParameterServerService.OpenJob): a new run starts at round 0, a run the server saved
     * resumes where it was, an open run takes the new settings. The bridge names the job's owner
     * (the scheduler that dispatched it) as the run's owner, the one peer that may then name the
     * run's expected workers (ParameterServerService.SetExpectedWorkers).
     *
     * Errors:
     *   PERMISSION_DENIED NOT_AGGREGATE_JOB: the job's executor class is not "aggregate".
     *   PERMISSION_DENIED RUN_NOT_OWNED: run_id names another run than the job's config.run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no run_id.
     *   INVALID_ARGUMENT BAD_RUN_ID: the job's run_id is not a valid run id (parameter server).
     *   INVALID_ARGUMENT BAD_CODEC: the codec is not a known value (parameter server).
     *   INVALID_ARGUMENT BAD_RUN_CONFIG: expected_workers, quorum, timeout, outer_lr or
     *     outer_momentum is out of range (parameter server).
     */
    openRun: handleUnaryCall<OpenRunRequest, OpenRunResponse>;
    /**
     * WatchRun streams the job's run's round state as the parameter server reports it
     * (ParameterServerService.WatchRound): the state now, then one message per change; the stream
     * ends after the message whose run_state is RUN_STATE_FINISHED or RUN_STATE_CLOSED. After a
     * failure, watch again: every watch starts with the state now. An "aggregate" job watches
     * this worker's parameter server, an "eval" job the one its config.parameter_server names.
     *
     * Errors:
     *   PERMISSION_DENIED NOT_AGGREGATE_JOB: the job's executor class is neither "aggregate" nor
     *     "eval".
     *   PERMISSION_DENIED RUN_NOT_OWNED: run_id names another run than the job's config.run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no run_id (or, for an "eval"
     *     job, no parameter_server).
     *   NOT_FOUND RUN_NOT_OPEN: the parameter server does not have the run open (e.g. after a
     *     restart); OpenRun again.
     *   INTERNAL AGGREGATION_FAILED: closing a round failed; OpenRun resumes the run.
     *   ABORTED WATCH_OVERFLOW: the watch fell behind and was cut off; watch again.
     */
    watchRun: handleServerStreamingCall<WatchRunRequest, WatchRunResponse>;
    /**
     * CloseRun closes the job's run on this worker's parameter server
     * (ParameterServerService.CloseJob): pushes are refused from then on, θ and the last updates
     * stay served, its state stays on disk (a later OpenRun resumes it).
     *
     * Errors:
     *   PERMISSION_DENIED NOT_AGGREGATE_JOB: the job's executor class is not "aggregate".
     *   PERMISSION_DENIED RUN_NOT_OWNED: run_id names another run than the job's config.run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no run_id.
     *   NOT_FOUND RUN_NOT_OPEN: the parameter server does not know the run.
     */
    closeRun: handleUnaryCall<CloseRunRequest, CloseRunResponse>;
}
export interface JobBridgeServiceClient extends Client {
    /**
     * GetJob returns the job's description and configuration.
     *
     * Errors: none of its own.
     */
    getJob(request: GetJobRequest, callback: (error: ServiceError | null, response: GetJobResponse) => void): ClientUnaryCall;
    getJob(request: GetJobRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetJobResponse) => void): ClientUnaryCall;
    getJob(request: GetJobRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetJobResponse) => void): ClientUnaryCall;
    /**
     * FetchResource downloads a file:// or http(s):// URI into artifacts/; nothing is kept after
     * any error. A file:// source must lie in the job's work dir or in one of the directories the
     * worker's operator listed in job.fetch_roots (none by default). A
     * tendril-data://<dataset_id>/<asset name> URI names an asset of a data set (e.g. a checkpoint
     * added with `tendril data add-model`): it is streamed from the data node at the job's
     * config.data_node and checked against the sha256 that node's manifest lists. A resource
     * fetched with its sha256 (and every data node asset) is kept in the worker's resource cache:
     * a later fetch of the same sha256, by any job on the worker, is a read-only hard link to the
     * cached file (hashed again first), not a download.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_URI: uri is not file:///absolute/path, http://, https:// or
     *     tendril-data://<dataset_id>/<asset name> (plain names), or names a directory.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: a tendril-data:// URI, and the job's config has no
     *     data_node.
     *   NOT_FOUND ASSET_NOT_FOUND: the data node serves another data set, or its manifest lists no
     *     asset of that name.
     *   UNAVAILABLE DATA_NODE_UNREACHABLE: the data node of a tendril-data:// URI does not answer;
     *     retry.
     *   INVALID_ARGUMENT BAD_SHA256: sha256 is not 64 hex digits.
     *   INVALID_ARGUMENT BAD_DEST: the URI ends without a file name and dest is empty.
     *   NOT_FOUND RESOURCE_NOT_FOUND: the file:// source does not exist.
     *   PERMISSION_DENIED RESOURCE_OUTSIDE_ROOTS: the file:// source (symbolic links followed) is
     *     neither in the job's work dir nor in a directory of the worker's job.fetch_roots.
     *   PERMISSION_DENIED RESOURCE_FORBIDDEN: the worker may not read the file:// source.
     *   NOT_FOUND RESOURCE_HTTP_ERROR: the server answered HTTP 404 or 410.
     *   PERMISSION_DENIED RESOURCE_HTTP_ERROR: the server answered HTTP 401 or 403.
     *   UNAVAILABLE RESOURCE_HTTP_ERROR: the server answered HTTP 5xx; retry.
     *   FAILED_PRECONDITION RESOURCE_HTTP_ERROR: the server answered another HTTP error status.
     *   UNAVAILABLE RESOURCE_UNREACHABLE: cannot connect to the URI's host.
     *   UNAVAILABLE RESOURCE_TRANSFER: the download (or the data node's stream) broke off; retry.
     *   RESOURCE_EXHAUSTED RESOURCE_TRANSFER: the download broke off because the disk is full.
     *   DATA_LOSS SHA256_MISMATCH: the bytes do not have the expected sha256 (for a tendril-data://
     *     URI: the one the manifest lists, which must equal the sha256 given).
     */
    fetchResource(request: FetchResourceRequest, callback: (error: ServiceError | null, response: FetchResourceResponse) => void): ClientUnaryCall;
    fetchResource(request: FetchResourceRequest, metadata: Metadata, callback: (error: ServiceError | null, response: FetchResourceResponse) => void): ClientUnaryCall;
    fetchResource(request: FetchResourceRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: FetchResourceResponse) => void): ClientUnaryCall;
    /**
     * NextSlice returns the path of the next (prefetched) data slice. The reasons after the first
     * two are the DataFetcher's.
     *
     * Errors:
     *   FAILED_PRECONDITION NO_SCHEDULER: the job was dispatched without a scheduler.
     *   UNAVAILABLE SLICE_MISSING: the cached slice vanished before it was linked; call again.
     *   UNAVAILABLE FETCHER_STOPPING, UPSTREAM_UNAVAILABLE, DATA_NODE_UNAVAILABLE: the DataFetcher
     *     is stopping, or the scheduler or the data node cannot be reached; retry.
     *   NOT_FOUND JOB_NOT_OPEN: the DataFetcher lost the job again right after the bridge reopened
     *     it; retry.
     *   FAILED_PRECONDITION JOB_CLOSED: the job was closed at the DataFetcher; no more slices for it.
     *   FAILED_PRECONDITION UPSTREAM_REFUSED: the scheduler refused to assign a slice (its reason
     *     in metadata "upstream_reason").
     *   FAILED_PRECONDITION BAD_ASSIGNMENT, SLICE_LARGER_THAN_CACHE: the scheduler's assignment is
     *     unusable, or the slice is bigger than the worker's slice cache.
     *   DATA_LOSS SLICE_SHA256_MISMATCH: the slice arrived damaged twice; call again for the next
     *     one.
     *   RESOURCE_EXHAUSTED CACHE_WRITE_FAILED: the worker's disk is full.
     *   FAILED_PRECONDITION CACHE_WRITE_FAILED: the worker's slice cache cannot be written
     *     (permissions, file system); its operator must act.
     *   INTERNAL PREFETCH_FAILED: the DataFetcher's prefetch failed unexpectedly.
     */
    nextSlice(request: NextSliceRequest, callback: (error: ServiceError | null, response: NextSliceResponse) => void): ClientUnaryCall;
    nextSlice(request: NextSliceRequest, metadata: Metadata, callback: (error: ServiceError | null, response: NextSliceResponse) => void): ClientUnaryCall;
    nextSlice(request: NextSliceRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: NextSliceResponse) => void): ClientUnaryCall;
    /**
     * SendUpdate streams a pseudo-gradient file to the job's parameter server. The reasons after
     * JOB_CONFIG_BAD are the parameter server's and the bridge's sending.
     *
     * Errors:
     *   NOT_FOUND FILE_NOT_FOUND: path is not a file in the work dir.
     *   INVALID_ARGUMENT BAD_WEIGHT: weight is not a finite number > 0.
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   INVALID_ARGUMENT BAD_FILE: the file is not a SafeTensors file of floating tensors.
     *   INVALID_ARGUMENT BAD_DIGEST: digest is set with an unknown algorithm or hex digits that
     *     are not the algorithm's.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no parameter_server or run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_BAD: the job's config names an unknown codec, or a
     *     codec_block_size the codec cannot use.
     *   NOT_FOUND RUN_NOT_OPEN: the run's aggregate job has not opened it yet; retry.
     *   FAILED_PRECONDITION ROUND_CLOSED, ROUND_NOT_OPEN: the round closed without this update, or
     *     is not open yet: FetchParameters and join the open round.
     *   FAILED_PRECONDITION RUN_FINISHED, RUN_CLOSED: the run's last round is over, or the run was
     *     closed.
     *   FAILED_PRECONDITION NO_PARAMETERS: nobody published θ0 for the run yet.
     *   ALREADY_EXISTS ALREADY_COMMITTED: this worker's update of the round already counts (e.g. a
     *     retried send).
     *   INVALID_ARGUMENT LAYOUT_MISMATCH, NON_FINITE_UPDATE: the tensors differ from θ0's, or hold
     *     NaN or Inf.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the update arrived damaged; send it again.
     *   UNAVAILABLE PUSH_STALLED: the parameter server took no byte of several resumed sends; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     *   INTERNAL NOT_COMMITTED: the parameter server took the whole update without counting it.
     */
    sendUpdate(request: SendUpdateRequest, callback: (error: ServiceError | null, response: SendUpdateResponse) => void): ClientUnaryCall;
    sendUpdate(request: SendUpdateRequest, metadata: Metadata, callback: (error: ServiceError | null, response: SendUpdateResponse) => void): ClientUnaryCall;
    sendUpdate(request: SendUpdateRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: SendUpdateResponse) => void): ClientUnaryCall;
    /**
     * ReceiveUpdate waits for the outer update of a round and stores it in the work dir. The
     * reasons after JOB_CONFIG_MISSING and JOB_CONFIG_BAD are the parameter server's and the
     * bridge's receiving; nothing is kept after any error. When the parameter server lost this
     * worker's committed update of the round (it restarted before the round closed), the bridge
     * sends the update of its last SendUpdate of the round again and goes on waiting.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_TIMEOUT: timeout_seconds is negative, NaN or infinite.
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING, JOB_CONFIG_BAD: as for SendUpdate.
     *   DEADLINE_EXCEEDED ROUND_STILL_OPEN: the round did not close in time.
     *   FAILED_PRECONDITION UPDATE_GONE, ROUND_NOT_OPEN, RUN_CLOSED: the round's update is no longer
     *     kept, the round is not open yet, or the run was closed before the round did:
     *     FetchParameters and join the open round.
     *   FAILED_PRECONDITION PUSH_LOST: the parameter server lost this worker's update of the round
     *     and the bridge has no copy to send again (no SendUpdate of the round went through it):
     *     FetchParameters and join the open round.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open yet; retry.
     *   INTERNAL AGGREGATION_FAILED: the parameter server could not close the round.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the update arrived damaged.
     *   UNAVAILABLE PULL_CUT_SHORT: the parameter server's stream kept ending early; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     */
    receiveUpdate(request: ReceiveUpdateRequest, callback: (error: ServiceError | null, response: ReceiveUpdateResponse) => void): ClientUnaryCall;
    receiveUpdate(request: ReceiveUpdateRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ReceiveUpdateResponse) => void): ClientUnaryCall;
    receiveUpdate(request: ReceiveUpdateRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ReceiveUpdateResponse) => void): ClientUnaryCall;
    /**
     * ReportProgress forwards progress to the scheduler and returns its directive. BATCH reports
     * are forwarded in the background; a failed forward is answered to the next report. The
     * reasons after NO_SCHEDULER are the reference scheduler's.
     *
     * Errors:
     *   FAILED_PRECONDITION NO_SCHEDULER: the job was dispatched without a scheduler.
     *   NOT_FOUND UNKNOWN_JOB: the run no longer counts this job: stop.
     *   FAILED_PRECONDITION STALE_ROUND: the report names a round older than one already reported.
     *   INVALID_ARGUMENT BAD_PROGRESS_KIND, BAD_BATCH: the report's kind is not set, or a BATCH
     *     report has batch_size 0.
     */
    reportProgress(request: ReportProgressRequest, callback: (error: ServiceError | null, response: ReportProgressResponse) => void): ClientUnaryCall;
    reportProgress(request: ReportProgressRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ReportProgressResponse) => void): ClientUnaryCall;
    reportProgress(request: ReportProgressRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ReportProgressResponse) => void): ClientUnaryCall;
    /**
     * PublishParameters offers initial parameters θ0 (a SafeTensors file) to the job's
     * parameter server; the first offer of a run wins. The reasons after JOB_CONFIG_MISSING are
     * the parameter server's and the bridge's sending.
     *
     * Errors:
     *   NOT_FOUND FILE_NOT_FOUND: path is not a file in the work dir.
     *   INVALID_ARGUMENT BAD_FILE: the file is not a SafeTensors file of floating tensors.
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no parameter_server or run_id.
     *   NOT_FOUND RUN_NOT_OPEN: the aggregate job has not opened the run yet; retry.
     *   FAILED_PRECONDITION RUN_CLOSED: the run was closed.
     *   INVALID_ARGUMENT NON_FINITE_PARAMETERS: θ0 holds NaN or Inf.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: θ0 arrived damaged; send it again.
     *   UNAVAILABLE PUSH_STALLED: the parameter server took no byte of several resumed sends; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     */
    publishParameters(request: PublishParametersRequest, callback: (error: ServiceError | null, response: PublishParametersResponse) => void): ClientUnaryCall;
    publishParameters(request: PublishParametersRequest, metadata: Metadata, callback: (error: ServiceError | null, response: PublishParametersResponse) => void): ClientUnaryCall;
    publishParameters(request: PublishParametersRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: PublishParametersResponse) => void): ClientUnaryCall;
    /**
     * FetchParameters stores the parameter server's current θ in the work dir (join mid-run).
     * The reasons after JOB_CONFIG_MISSING are the parameter server's and the bridge's
     * receiving; nothing is kept after any error.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_FRAGMENT: fragment is set but is not below the job's config.fragments.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no parameter_server or run_id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open yet; retry.
     *   FAILED_PRECONDITION NO_PARAMETERS: nobody published θ0 for the run yet.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: θ arrived damaged.
     *   UNAVAILABLE PULL_CUT_SHORT: the parameter server's stream kept ending early; retry.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the parameter server's data connection kept breaking; retry.
     */
    fetchParameters(request: FetchParametersRequest, callback: (error: ServiceError | null, response: FetchParametersResponse) => void): ClientUnaryCall;
    fetchParameters(request: FetchParametersRequest, metadata: Metadata, callback: (error: ServiceError | null, response: FetchParametersResponse) => void): ClientUnaryCall;
    fetchParameters(request: FetchParametersRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: FetchParametersResponse) => void): ClientUnaryCall;
    /**
     * OpenRun opens the job's run on this worker's parameter server with the aggregation settings
     * given (ParameterServerService.OpenJob): a new run starts at round 0, a run the server saved
     * resumes where it was, an open run takes the new settings. The bridge names the job's owner
     * (the scheduler that dispatched it) as the run's owner, the one peer that may then name the
     * run's expected workers (ParameterServerService.SetExpectedWorkers).
     *
     * Errors:
     *   PERMISSION_DENIED NOT_AGGREGATE_JOB: the job's executor class is not "aggregate".
     *   PERMISSION_DENIED RUN_NOT_OWNED: run_id names another run than the job's config.run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no run_id.
     *   INVALID_ARGUMENT BAD_RUN_ID: the job's run_id is not a valid run id (parameter server).
     *   INVALID_ARGUMENT BAD_CODEC: the codec is not a known value (parameter server).
     *   INVALID_ARGUMENT BAD_RUN_CONFIG: expected_workers, quorum, timeout, outer_lr or
     *     outer_momentum is out of range (parameter server).
     */
    openRun(request: OpenRunRequest, callback: (error: ServiceError | null, response: OpenRunResponse) => void): ClientUnaryCall;
    openRun(request: OpenRunRequest, metadata: Metadata, callback: (error: ServiceError | null, response: OpenRunResponse) => void): ClientUnaryCall;
    openRun(request: OpenRunRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: OpenRunResponse) => void): ClientUnaryCall;
    /**
     * WatchRun streams the job's run's round state as the parameter server reports it
     * (ParameterServerService.WatchRound): the state now, then one message per change; the stream
     * ends after the message whose run_state is RUN_STATE_FINISHED or RUN_STATE_CLOSED. After a
     * failure, watch again: every watch starts with the state now. An "aggregate" job watches
     * this worker's parameter server, an "eval" job the one its config.parameter_server names.
     *
     * Errors:
     *   PERMISSION_DENIED NOT_AGGREGATE_JOB: the job's executor class is neither "aggregate" nor
     *     "eval".
     *   PERMISSION_DENIED RUN_NOT_OWNED: run_id names another run than the job's config.run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no run_id (or, for an "eval"
     *     job, no parameter_server).
     *   NOT_FOUND RUN_NOT_OPEN: the parameter server does not have the run open (e.g. after a
     *     restart); OpenRun again.
     *   INTERNAL AGGREGATION_FAILED: closing a round failed; OpenRun resumes the run.
     *   ABORTED WATCH_OVERFLOW: the watch fell behind and was cut off; watch again.
     */
    watchRun(request: WatchRunRequest, options?: Partial<CallOptions>): ClientReadableStream<WatchRunResponse>;
    watchRun(request: WatchRunRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<WatchRunResponse>;
    /**
     * CloseRun closes the job's run on this worker's parameter server
     * (ParameterServerService.CloseJob): pushes are refused from then on, θ and the last updates
     * stay served, its state stays on disk (a later OpenRun resumes it).
     *
     * Errors:
     *   PERMISSION_DENIED NOT_AGGREGATE_JOB: the job's executor class is not "aggregate".
     *   PERMISSION_DENIED RUN_NOT_OWNED: run_id names another run than the job's config.run_id.
     *   FAILED_PRECONDITION JOB_CONFIG_MISSING: the job's config has no run_id.
     *   NOT_FOUND RUN_NOT_OPEN: the parameter server does not know the run.
     */
    closeRun(request: CloseRunRequest, callback: (error: ServiceError | null, response: CloseRunResponse) => void): ClientUnaryCall;
    closeRun(request: CloseRunRequest, metadata: Metadata, callback: (error: ServiceError | null, response: CloseRunResponse) => void): ClientUnaryCall;
    closeRun(request: CloseRunRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: CloseRunResponse) => void): ClientUnaryCall;
}
export declare const JobBridgeServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): JobBridgeServiceClient;
    service: typeof JobBridgeServiceService;
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
