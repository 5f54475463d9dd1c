import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type handleServerStreamingCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Duration } from "../../../google/protobuf/duration";
import { ExecutorRef } from "../../common/v1/common";
/** JobState is where a job is in its life. */
export declare enum JobState {
    /** JOB_STATE_UNSPECIFIED - Not set. */
    JOB_STATE_UNSPECIFIED = 0,
    /** JOB_STATE_PENDING - Accepted, executor not started yet. */
    JOB_STATE_PENDING = 1,
    /** JOB_STATE_RUNNING - Executor running. */
    JOB_STATE_RUNNING = 2,
    /** JOB_STATE_SUCCEEDED - Executor exited with code 0. */
    JOB_STATE_SUCCEEDED = 3,
    /** JOB_STATE_FAILED - Executor exited non-zero, could not start, or timed out. */
    JOB_STATE_FAILED = 4,
    /** JOB_STATE_CANCELLED - Cancelled by its owner, by lease expiry or by shutdown. */
    JOB_STATE_CANCELLED = 5,
    UNRECOGNIZED = -1
}
export declare function jobStateFromJSON(object: any): JobState;
export declare function jobStateToJSON(object: JobState): string;
/** Job is one job's record. */
export interface Job {
    /** Job id (chosen by the dispatcher). */
    jobId: string;
    /** Lease the job runs under. */
    leaseId: string;
    /** Owner (the dispatching scheduler's id). */
    ownerId: string;
    /** Executor run. */
    executor: ExecutorRef | undefined;
    /** Current state. */
    state: JobState;
    /** Executor exit code once ended (negative: killed by that signal). */
    exitCode: number;
    /** Why the job ended as it did. */
    reason: string;
    /** Dispatch time. */
    createdAt: Date | undefined;
    /** Executor start time. */
    startedAt: Date | undefined;
    /** End time. */
    finishedAt: Date | undefined;
    /** The job's work dir on the worker. */
    workDir: string;
    /** Configuration handed to the executor. */
    config: {
        [key: string]: any;
    } | undefined;
    /** Latest progress figures reported by the executor (e.g. round, loss). */
    progress: {
        [key: string]: number;
    };
}
export interface Job_ProgressEntry {
    key: string;
    value: number;
}
/** DispatchRequest starts a job. */
export interface DispatchRequest {
    /** Job id: 1-64 characters of [A-Za-z0-9._-], unique on this worker. */
    jobId: string;
    /** A live lease held by the caller. */
    leaseId: string;
    /** An executor configured on this worker. */
    executor: ExecutorRef | undefined;
    /** Configuration for the executor (written to job.json); its numbers must be finite. */
    config: {
        [key: string]: any;
    } | undefined;
    /** Wall-clock limit, at most a year (366 days); unset or zero means the worker's default. */
    timeout: Duration | undefined;
    /** Address of the scheduler's CoordinationService for progress and slices (optional). */
    coordinatorAddress: string;
}
/** DispatchResponse returns the new job. */
export interface DispatchResponse {
    /** The job (PENDING or RUNNING). */
    job: Job | undefined;
}
/** GetRequest names a job. */
export interface GetRequest {
    /** Job id. */
    jobId: string;
}
/** GetResponse returns a job. */
export interface GetResponse {
    /** The job. */
    job: Job | undefined;
}
/** ListRequest filters the listing. */
export interface ListRequest {
    /** Only jobs in these states; empty for all. */
    states: JobState[];
    /** Most jobs to return; 0 means 100. */
    limit: number;
}
/** ListResponse lists jobs. */
export interface ListResponse {
    /** Newest first. */
    jobs: Job[];
}
/** WatchRequest names what to watch. */
export interface WatchRequest {
    /** Job id; empty watches every job. */
    jobId: string;
}
/** WatchResponse is one state change. */
export interface WatchResponse {
    /** The job after the change. */
    job: Job | undefined;
}
/** CancelRequest names a job. */
export interface CancelRequest {
    /** Job id. */
    jobId: string;
    /** Why (recorded in the job's reason). */
    reason: string;
}
/** CancelResponse returns the job. */
export interface CancelResponse {
    /** The job (CANCELLED, or already ended). */
    job: Job | undefined;
}
/** LogsRequest asks for an executor's output. */
export interface LogsRequest {
    /** Job id. */
    jobId: string;
    /** Start with the last this many lines; 0 means the whole log. */
    tailLines: number;
    /** Keep streaming new output until the job ends. */
    follow: boolean;
}
/** LogsResponse is a piece of output. */
export interface LogsResponse {
    /** Text (UTF-8, undecodable bytes replaced). */
    text: string;
}
/** ListResultsRequest names an ended job. */
export interface ListResultsRequest {
    /** Job id. */
    jobId: string;
}
/** ResultFile is one file of a job's results. */
export interface ResultFile {
    /** Path relative to the results folder, '/'-separated. */
    path: string;
    /** Size in bytes. */
    sizeBytes: number;
    /** Hex sha256 of the content. */
    sha256: string;
}
/** ResultsManifest lists a job's kept results. */
export interface ResultsManifest {
    /** Job id. */
    jobId: string;
    /** Every kept file, sorted by path. */
    files: ResultFile[];
    /** Sum of the files' sizes. */
    totalBytes: number;
    /** Entries that were not kept and why (e.g. "link.txt: a symbolic link"). */
    skipped: string[];
    /** When the results were kept (the job's clean-up). */
    keptAt: Date | undefined;
}
/** ListResultsResponse returns the manifest. */
export interface ListResultsResponse {
    /** The manifest. */
    manifest: ResultsManifest | undefined;
}
/** FetchResultRequest names one file and where to start. */
export interface FetchResultRequest {
    /** Job id. */
    jobId: string;
    /** The file's path as the manifest lists it. */
    path: string;
    /** First byte to send (0: the start); at most the file's size. */
    offset: number;
}
/** FetchResultResponse is one chunk of the file. */
export interface FetchResultResponse {
    /** Offset of data in the file. */
    offset: number;
    /** At most 1 MiB of content (empty in the only chunk of an empty file or of an offset at the end). */
    data: Buffer;
    /** The file's size. */
    sizeBytes: number;
}
/** DeleteResultsRequest names an ended job. */
export interface DeleteResultsRequest {
    /** Job id. */
    jobId: string;
}
/** DeleteResultsResponse says what was deleted. */
export interface DeleteResultsResponse {
    /** Bytes of results freed (0 when they were gone already). */
    freedBytes: number;
}
export declare const Job: MessageFns<Job>;
export declare const Job_ProgressEntry: MessageFns<Job_ProgressEntry>;
export declare const DispatchRequest: MessageFns<DispatchRequest>;
export declare const DispatchResponse: MessageFns<DispatchResponse>;
export declare const GetRequest: MessageFns<GetRequest>;
export declare const GetResponse: MessageFns<GetResponse>;
export declare const ListRequest: MessageFns<ListRequest>;
export declare const ListResponse: MessageFns<ListResponse>;
export declare const WatchRequest: MessageFns<WatchRequest>;
export declare const WatchResponse: MessageFns<WatchResponse>;
export declare const CancelRequest: MessageFns<CancelRequest>;
export declare const CancelResponse: MessageFns<CancelResponse>;
export declare const LogsRequest: MessageFns<LogsRequest>;
export declare const LogsResponse: MessageFns<LogsResponse>;
export declare const ListResultsRequest: MessageFns<ListResultsRequest>;
export declare const ResultFile: MessageFns<ResultFile>;
export declare const ResultsManifest: MessageFns<ResultsManifest>;
export declare const ListResultsResponse: MessageFns<ListResultsResponse>;
export declare const FetchResultRequest: MessageFns<FetchResultRequest>;
export declare const FetchResultResponse: MessageFns<FetchResultResponse>;
export declare const DeleteResultsRequest: MessageFns<DeleteResultsRequest>;
export declare const DeleteResultsResponse: MessageFns<DeleteResultsResponse>;
/**
 * JobService runs executors for the holders of leases: each job gets its own work dir,
 * its own job bridge and its own executor process.
 */
export type JobServiceService = typeof JobServiceService;
export declare const JobServiceService: {
    /**
     * Dispatch starts a job under a live lease held by the caller.
     *
     * Errors:
     *   UNAVAILABLE SHUTTING_DOWN: the JobService is stopping.
     *   UNAVAILABLE CANNOT_RUN_JOBS: the worker cannot run jobs now (its state or work dir is full
     *     or read-only, or its jobs.db fails); the JobService reports NOT_SERVING under its name
     *     meanwhile. Dispatch to another worker.
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not 1-64 letters, digits, '.', '_' or '-'.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, EXECUTOR_MISSING: lease_id, or the executor's class or
     *     name, is empty.
     *   INVALID_ARGUMENT BAD_LEASE_ID: lease_id is over 256 characters.
     *   INVALID_ARGUMENT BAD_TIMEOUT: the timeout is not a valid Duration (nanos out of range or of
     *     the other sign), negative, or over a year (366 days).
     *   INVALID_ARGUMENT BAD_CONFIG: a number in config is NaN or infinite (JSON has no such number).
     *   INVALID_ARGUMENT BAD_COORDINATOR_ADDRESS: coordinator_address is not host:port.
     *   FAILED_PRECONDITION EXECUTOR_NOT_CONFIGURED: the worker has no such executor.
     *   FAILED_PRECONDITION SOCKET_PATH_TOO_LONG: the job's bridge socket path would not fit a Unix
     *     socket.
     *   ALREADY_EXISTS JOB_EXISTS: the job id was used before on this worker.
     *   RESOURCE_EXHAUSTED TOO_MANY_JOBS: job.max_concurrent_jobs jobs are running.
     *   NOT_FOUND LEASE_NOT_FOUND: the lease is not live on this worker.
     *   PERMISSION_DENIED LEASE_NOT_OWNED: the lease belongs to another scheduler.
     *   FAILED_PRECONDITION LEASE_NOT_RENEWABLE: the lease is still temporary (its offer is not
     *     accepted yet).
     *   FAILED_PRECONDITION LEASE_EXPIRED: the lease has expired.
     *   UNAVAILABLE LEASE_SERVICE_UNAVAILABLE: the LeaseService did not answer the lease check;
     *     retry.
     *   INVALID_ARGUMENT LEASE_CHECK_FAILED: the LeaseService refused the lease check (e.g. a
     *     lease_id over 256 characters); any other code it answers is passed on with this reason.
     *   FAILED_PRECONDITION BAD_EXECUTOR_COMMAND: the executor's configured command is empty or uses
     *     an unknown placeholder.
     *   FAILED_PRECONDITION EXECUTOR_START_FAILED: the executor's command could not be started.
     *   INTERNAL BRIDGE_SOCKET_FAILED: the job's bridge could not listen on its socket in the work
     *     dir.
     */
    readonly dispatch: {
        readonly path: "/tendril.job.v1.JobService/Dispatch";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: DispatchRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => DispatchRequest;
        readonly responseSerialize: (value: DispatchResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => DispatchResponse;
    };
    /**
     * Get returns one job.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id (1-64 letters, digits, '.', '_' or '-').
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     */
    readonly get: {
        readonly path: "/tendril.job.v1.JobService/Get";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetRequest;
        readonly responseSerialize: (value: GetResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetResponse;
    };
    /**
     * List returns jobs, newest first.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_STATE: states holds a value JobState does not declare, or
     *     JOB_STATE_UNSPECIFIED.
     */
    readonly list: {
        readonly path: "/tendril.job.v1.JobService/List";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListRequest;
        readonly responseSerialize: (value: ListResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListResponse;
    };
    /**
     * Watch streams a job's (or every job's) state changes.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is set and is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: job_id is set and no such job is on this worker.
     *   ABORTED WATCH_OVERFLOW: the watcher fell behind and was cut off; watch again.
     */
    readonly watch: {
        readonly path: "/tendril.job.v1.JobService/Watch";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: WatchRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => WatchRequest;
        readonly responseSerialize: (value: WatchResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => WatchResponse;
    };
    /**
     * Cancel stops a job: SIGTERM, then SIGKILL after the grace period (owner only).
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   INVALID_ARGUMENT REASON_TOO_LONG: reason is over 1024 characters.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   UNAVAILABLE JOB_STARTING: the job is still being dispatched; retry in a moment.
     */
    readonly cancel: {
        readonly path: "/tendril.job.v1.JobService/Cancel";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: CancelRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => CancelRequest;
        readonly responseSerialize: (value: CancelResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => CancelResponse;
    };
    /**
     * Logs streams an executor's output: the last lines, then new lines when following.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     */
    readonly logs: {
        readonly path: "/tendril.job.v1.JobService/Logs";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: LogsRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => LogsRequest;
        readonly responseSerialize: (value: LogsResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => LogsResponse;
    };
    /**
     * ListResults returns the manifest of an ended job's results: every regular file the executor
     * left under results/ in its work dir (its relative path, size and sha256). When a job ends
     * (in any end state) the JobService moves that folder out of the work dir to
     * <state_dir>/results/job-<id>/ and builds the manifest; symbolic links and anything else that
     * is not a regular file or a folder are not kept (listed in `skipped`). Results are deleted
     * after job.keep_results_days, beyond job.keep_results_mib (oldest first) and by DeleteResults.
     * Only the job's owner (the peer that dispatched it) may read them.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   FAILED_PRECONDITION JOB_NOT_ENDED: the job is still pending or running; wait for its end
     *     (Watch).
     *   UNAVAILABLE RESULTS_NOT_READY: the job ended but its clean-up (which keeps the results)
     *     failed and is retried; retry.
     *   NOT_FOUND RESULTS_GONE: the results were deleted (DeleteResults, retention) or the job
     *     left none that could be kept.
     */
    readonly listResults: {
        readonly path: "/tendril.job.v1.JobService/ListResults";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListResultsRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListResultsRequest;
        readonly responseSerialize: (value: ListResultsResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListResultsResponse;
    };
    /**
     * FetchResult streams one file of an ended job's results from `offset` in chunks of at most
     * 1 MiB, each with its offset; a broken download resumes with the offset it reached. Check the
     * whole file against the manifest's sha256.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   INVALID_ARGUMENT BAD_RESULT_PATH: path is empty, absolute, has an empty, '.' or '..'
     *     component or a NUL, or is over 4096 bytes.
     *   INVALID_ARGUMENT BAD_OFFSET: offset is past the file's end.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   FAILED_PRECONDITION JOB_NOT_ENDED: the job is still pending or running.
     *   UNAVAILABLE RESULTS_NOT_READY: the job's clean-up is being retried; retry.
     *   NOT_FOUND RESULTS_GONE: the job's results were deleted.
     *   NOT_FOUND RESULT_NOT_FOUND: the manifest lists no file at path.
     */
    readonly fetchResult: {
        readonly path: "/tendril.job.v1.JobService/FetchResult";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: FetchResultRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => FetchResultRequest;
        readonly responseSerialize: (value: FetchResultResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => FetchResultResponse;
    };
    /**
     * DeleteResults deletes an ended job's kept results (owner only); deleting results that are
     * already gone is not an error.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   FAILED_PRECONDITION JOB_NOT_ENDED: the job is still pending or running.
     */
    readonly deleteResults: {
        readonly path: "/tendril.job.v1.JobService/DeleteResults";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: DeleteResultsRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => DeleteResultsRequest;
        readonly responseSerialize: (value: DeleteResultsResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => DeleteResultsResponse;
    };
};
export interface JobServiceServer extends UntypedServiceImplementation {
    /**
     * Dispatch starts a job under a live lease held by the caller.
     *
     * Errors:
     *   UNAVAILABLE SHUTTING_DOWN: the JobService is stopping.
     *   UNAVAILABLE CANNOT_RUN_JOBS: the worker cannot run jobs now (its state or work dir is full
     *     or read-only, or its jobs.db fails); the JobService reports NOT_SERVING under its name
     *     meanwhile. Dispatch to another worker.
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not 1-64 letters, digits, '.', '_' or '-'.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, EXECUTOR_MISSING: lease_id, or the executor's class or
     *     name, is empty.
     *   INVALID_ARGUMENT BAD_LEASE_ID: lease_id is over 256 characters.
     *   INVALID_ARGUMENT BAD_TIMEOUT: the timeout is not a valid Duration (nanos out of range or of
     *     the other sign), negative, or over a year (366 days).
     *   INVALID_ARGUMENT BAD_CONFIG: a number in config is NaN or infinite (JSON has no such number).
     *   INVALID_ARGUMENT BAD_COORDINATOR_ADDRESS: coordinator_address is not host:port.
     *   FAILED_PRECONDITION EXECUTOR_NOT_CONFIGURED: the worker has no such executor.
     *   FAILED_PRECONDITION SOCKET_PATH_TOO_LONG: the job's bridge socket path would not fit a Unix
     *     socket.
     *   ALREADY_EXISTS JOB_EXISTS: the job id was used before on this worker.
     *   RESOURCE_EXHAUSTED TOO_MANY_JOBS: job.max_concurrent_jobs jobs are running.
     *   NOT_FOUND LEASE_NOT_FOUND: the lease is not live on this worker.
     *   PERMISSION_DENIED LEASE_NOT_OWNED: the lease belongs to another scheduler.
     *   FAILED_PRECONDITION LEASE_NOT_RENEWABLE: the lease is still temporary (its offer is not
     *     accepted yet).
     *   FAILED_PRECONDITION LEASE_EXPIRED: the lease has expired.
     *   UNAVAILABLE LEASE_SERVICE_UNAVAILABLE: the LeaseService did not answer the lease check;
     *     retry.
     *   INVALID_ARGUMENT LEASE_CHECK_FAILED: the LeaseService refused the lease check (e.g. a
     *     lease_id over 256 characters); any other code it answers is passed on with this reason.
     *   FAILED_PRECONDITION BAD_EXECUTOR_COMMAND: the executor's configured command is empty or uses
     *     an unknown placeholder.
     *   FAILED_PRECONDITION EXECUTOR_START_FAILED: the executor's command could not be started.
     *   INTERNAL BRIDGE_SOCKET_FAILED: the job's bridge could not listen on its socket in the work
     *     dir.
     */
    dispatch: handleUnaryCall<DispatchRequest, DispatchResponse>;
    /**
     * Get returns one job.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id (1-64 letters, digits, '.', '_' or '-').
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     */
    get: handleUnaryCall<GetRequest, GetResponse>;
    /**
     * List returns jobs, newest first.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_STATE: states holds a value JobState does not declare, or
     *     JOB_STATE_UNSPECIFIED.
     */
    list: handleUnaryCall<ListRequest, ListResponse>;
    /**
     * Watch streams a job's (or every job's) state changes.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is set and is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: job_id is set and no such job is on this worker.
     *   ABORTED WATCH_OVERFLOW: the watcher fell behind and was cut off; watch again.
     */
    watch: handleServerStreamingCall<WatchRequest, WatchResponse>;
    /**
     * Cancel stops a job: SIGTERM, then SIGKILL after the grace period (owner only).
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   INVALID_ARGUMENT REASON_TOO_LONG: reason is over 1024 characters.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   UNAVAILABLE JOB_STARTING: the job is still being dispatched; retry in a moment.
     */
    cancel: handleUnaryCall<CancelRequest, CancelResponse>;
    /**
     * Logs streams an executor's output: the last lines, then new lines when following.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     */
    logs: handleServerStreamingCall<LogsRequest, LogsResponse>;
    /**
     * ListResults returns the manifest of an ended job's results: every regular file the executor
     * left under results/ in its work dir (its relative path, size and sha256). When a job ends
     * (in any end state) the JobService moves that folder out of the work dir to
     * <state_dir>/results/job-<id>/ and builds the manifest; symbolic links and anything else that
     * is not a regular file or a folder are not kept (listed in `skipped`). Results are deleted
     * after job.keep_results_days, beyond job.keep_results_mib (oldest first) and by DeleteResults.
     * Only the job's owner (the peer that dispatched it) may read them.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   FAILED_PRECONDITION JOB_NOT_ENDED: the job is still pending or running; wait for its end
     *     (Watch).
     *   UNAVAILABLE RESULTS_NOT_READY: the job ended but its clean-up (which keeps the results)
     *     failed and is retried; retry.
     *   NOT_FOUND RESULTS_GONE: the results were deleted (DeleteResults, retention) or the job
     *     left none that could be kept.
     */
    listResults: handleUnaryCall<ListResultsRequest, ListResultsResponse>;
    /**
     * FetchResult streams one file of an ended job's results from `offset` in chunks of at most
     * 1 MiB, each with its offset; a broken download resumes with the offset it reached. Check the
     * whole file against the manifest's sha256.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   INVALID_ARGUMENT BAD_RESULT_PATH: path is empty, absolute, has an empty, '.' or '..'
     *     component or a NUL, or is over 4096 bytes.
     *   INVALID_ARGUMENT BAD_OFFSET: offset is past the file's end.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   FAILED_PRECONDITION JOB_NOT_ENDED: the job is still pending or running.
     *   UNAVAILABLE RESULTS_NOT_READY: the job's clean-up is being retried; retry.
     *   NOT_FOUND RESULTS_GONE: the job's results were deleted.
     *   NOT_FOUND RESULT_NOT_FOUND: the manifest lists no file at path.
     */
    fetchResult: handleServerStreamingCall<FetchResultRequest, FetchResultResponse>;
    /**
     * DeleteResults deletes an ended job's kept results (owner only); deleting results that are
     * already gone is not an error.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   FAILED_PRECONDITION JOB_NOT_ENDED: the job is still pending or running.
     */
    deleteResults: handleUnaryCall<DeleteResultsRequest, DeleteResultsResponse>;
}
export interface JobServiceClient extends Client {
    /**
     * Dispatch starts a job under a live lease held by the caller.
     *
     * Errors:
     *   UNAVAILABLE SHUTTING_DOWN: the JobService is stopping.
     *   UNAVAILABLE CANNOT_RUN_JOBS: the worker cannot run jobs now (its state or work dir is full
     *     or read-only, or its jobs.db fails); the JobService reports NOT_SERVING under its name
     *     meanwhile. Dispatch to another worker.
     *   UNAUTHENTICATED CALLER_UNKNOWN: the call names no peer id.
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not 1-64 letters, digits, '.', '_' or '-'.
     *   INVALID_ARGUMENT LEASE_ID_MISSING, EXECUTOR_MISSING: lease_id, or the executor's class or
     *     name, is empty.
     *   INVALID_ARGUMENT BAD_LEASE_ID: lease_id is over 256 characters.
     *   INVALID_ARGUMENT BAD_TIMEOUT: the timeout is not a valid Duration (nanos out of range or of
     *     the other sign), negative, or over a year (366 days).
     *   INVALID_ARGUMENT BAD_CONFIG: a number in config is NaN or infinite (JSON has no such number).
     *   INVALID_ARGUMENT BAD_COORDINATOR_ADDRESS: coordinator_address is not host:port.
     *   FAILED_PRECONDITION EXECUTOR_NOT_CONFIGURED: the worker has no such executor.
     *   FAILED_PRECONDITION SOCKET_PATH_TOO_LONG: the job's bridge socket path would not fit a Unix
     *     socket.
     *   ALREADY_EXISTS JOB_EXISTS: the job id was used before on this worker.
     *   RESOURCE_EXHAUSTED TOO_MANY_JOBS: job.max_concurrent_jobs jobs are running.
     *   NOT_FOUND LEASE_NOT_FOUND: the lease is not live on this worker.
     *   PERMISSION_DENIED LEASE_NOT_OWNED: the lease belongs to another scheduler.
     *   FAILED_PRECONDITION LEASE_NOT_RENEWABLE: the lease is still temporary (its offer is not
     *     accepted yet).
     *   FAILED_PRECONDITION LEASE_EXPIRED: the lease has expired.
     *   UNAVAILABLE LEASE_SERVICE_UNAVAILABLE: the LeaseService did not answer the lease check;
     *     retry.
     *   INVALID_ARGUMENT LEASE_CHECK_FAILED: the LeaseService refused the lease check (e.g. a
     *     lease_id over 256 characters); any other code it answers is passed on with this reason.
     *   FAILED_PRECONDITION BAD_EXECUTOR_COMMAND: the executor's configured command is empty or uses
     *     an unknown placeholder.
     *   FAILED_PRECONDITION EXECUTOR_START_FAILED: the executor's command could not be started.
     *   INTERNAL BRIDGE_SOCKET_FAILED: the job's bridge could not listen on its socket in the work
     *     dir.
     */
    dispatch(request: DispatchRequest, callback: (error: ServiceError | null, response: DispatchResponse) => void): ClientUnaryCall;
    dispatch(request: DispatchRequest, metadata: Metadata, callback: (error: ServiceError | null, response: DispatchResponse) => void): ClientUnaryCall;
    dispatch(request: DispatchRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: DispatchResponse) => void): ClientUnaryCall;
    /**
     * Get returns one job.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id (1-64 letters, digits, '.', '_' or '-').
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     */
    get(request: GetRequest, callback: (error: ServiceError | null, response: GetResponse) => void): ClientUnaryCall;
    get(request: GetRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetResponse) => void): ClientUnaryCall;
    get(request: GetRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetResponse) => void): ClientUnaryCall;
    /**
     * List returns jobs, newest first.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_STATE: states holds a value JobState does not declare, or
     *     JOB_STATE_UNSPECIFIED.
     */
    list(request: ListRequest, callback: (error: ServiceError | null, response: ListResponse) => void): ClientUnaryCall;
    list(request: ListRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListResponse) => void): ClientUnaryCall;
    list(request: ListRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListResponse) => void): ClientUnaryCall;
    /**
     * Watch streams a job's (or every job's) state changes.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is set and is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: job_id is set and no such job is on this worker.
     *   ABORTED WATCH_OVERFLOW: the watcher fell behind and was cut off; watch again.
     */
    watch(request: WatchRequest, options?: Partial<CallOptions>): ClientReadableStream<WatchResponse>;
    watch(request: WatchRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<WatchResponse>;
    /**
     * Cancel stops a job: SIGTERM, then SIGKILL after the grace period (owner only).
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   INVALID_ARGUMENT REASON_TOO_LONG: reason is over 1024 characters.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   UNAVAILABLE JOB_STARTING: the job is still being dispatched; retry in a moment.
     */
    cancel(request: CancelRequest, callback: (error: ServiceError | null, response: CancelResponse) => void): ClientUnaryCall;
    cancel(request: CancelRequest, metadata: Metadata, callback: (error: ServiceError | null, response: CancelResponse) => void): ClientUnaryCall;
    cancel(request: CancelRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: CancelResponse) => void): ClientUnaryCall;
    /**
     * Logs streams an executor's output: the last lines, then new lines when following.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     */
    logs(request: LogsRequest, options?: Partial<CallOptions>): ClientReadableStream<LogsResponse>;
    logs(request: LogsRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<LogsResponse>;
    /**
     * ListResults returns the manifest of an ended job's results: every regular file the executor
     * left under results/ in its work dir (its relative path, size and sha256). When a job ends
     * (in any end state) the JobService moves that folder out of the work dir to
     * <state_dir>/results/job-<id>/ and builds the manifest; symbolic links and anything else that
     * is not a regular file or a folder are not kept (listed in `skipped`). Results are deleted
     * after job.keep_results_days, beyond job.keep_results_mib (oldest first) and by DeleteResults.
     * Only the job's owner (the peer that dispatched it) may read them.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   FAILED_PRECONDITION JOB_NOT_ENDED: the job is still pending or running; wait for its end
     *     (Watch).
     *   UNAVAILABLE RESULTS_NOT_READY: the job ended but its clean-up (which keeps the results)
     *     failed and is retried; retry.
     *   NOT_FOUND RESULTS_GONE: the results were deleted (DeleteResults, retention) or the job
     *     left none that could be kept.
     */
    listResults(request: ListResultsRequest, callback: (error: ServiceError | null, response: ListResultsResponse) => void): ClientUnaryCall;
    listResults(request: ListResultsRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListResultsResponse) => void): ClientUnaryCall;
    listResults(request: ListResultsRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListResultsResponse) => void): ClientUnaryCall;
    /**
     * FetchResult streams one file of an ended job's results from `offset` in chunks of at most
     * 1 MiB, each with its offset; a broken download resumes with the offset it reached. Check the
     * whole file against the manifest's sha256.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   INVALID_ARGUMENT BAD_RESULT_PATH: path is empty, absolute, has an empty, '.' or '..'
     *     component or a NUL, or is over 4096 bytes.
     *   INVALID_ARGUMENT BAD_OFFSET: offset is past the file's end.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   FAILED_PRECONDITION JOB_NOT_ENDED: the job is still pending or running.
     *   UNAVAILABLE RESULTS_NOT_READY: the job's clean-up is being retried; retry.
     *   NOT_FOUND RESULTS_GONE: the job's results were deleted.
     *   NOT_FOUND RESULT_NOT_FOUND: the manifest lists no file at path.
     */
    fetchResult(request: FetchResultRequest, options?: Partial<CallOptions>): ClientReadableStream<FetchResultResponse>;
    fetchResult(request: FetchResultRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<FetchResultResponse>;
    /**
     * DeleteResults deletes an ended job's kept results (owner only); deleting results that are
     * already gone is not an error.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_ID: job_id is not a job id.
     *   NOT_FOUND JOB_NOT_FOUND: no job with that id on this worker.
     *   PERMISSION_DENIED NOT_JOB_OWNER: the job belongs to another peer.
     *   FAILED_PRECONDITION JOB_NOT_ENDED: the job is still pending or running.
     */
    deleteResults(request: DeleteResultsRequest, callback: (error: ServiceError | null, response: DeleteResultsResponse) => void): ClientUnaryCall;
    deleteResults(request: DeleteResultsRequest, metadata: Metadata, callback: (error: ServiceError | null, response: DeleteResultsResponse) => void): ClientUnaryCall;
    deleteResults(request: DeleteResultsRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: DeleteResultsResponse) => void): ClientUnaryCall;
}
export declare const JobServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): JobServiceClient;
    service: typeof JobServiceService;
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
