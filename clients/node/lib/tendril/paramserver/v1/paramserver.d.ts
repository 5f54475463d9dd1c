import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type ClientWritableStream, type handleClientStreamingCall, type handleServerStreamingCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Codec, StreamMessage } from "../../tensor/v1/tensor";
/** RoundState is where a round is. */
export declare enum RoundState {
    /** ROUND_STATE_UNSPECIFIED - Not set. */
    ROUND_STATE_UNSPECIFIED = 0,
    /** ROUND_STATE_OPEN - Accepting pushes. */
    ROUND_STATE_OPEN = 1,
    /** ROUND_STATE_CLOSED - Closed; its update is served. */
    ROUND_STATE_CLOSED = 2,
    UNRECOGNIZED = -1
}
export declare function roundStateFromJSON(object: any): RoundState;
export declare function roundStateToJSON(object: RoundState): string;
/** RunState is where a run is as a whole. */
export declare enum RunState {
    /** RUN_STATE_UNSPECIFIED - Not set. */
    RUN_STATE_UNSPECIFIED = 0,
    /** RUN_STATE_OPEN - Rounds are run: pushes are taken (while the current round is open). */
    RUN_STATE_OPEN = 1,
    /** RUN_STATE_FINISHED - Its last round closed and that round's update is served; no more pushes. */
    RUN_STATE_FINISHED = 2,
    /** RUN_STATE_CLOSED - Closed by CloseJob; θ and the last updates stay served unless it was purged. */
    RUN_STATE_CLOSED = 3,
    UNRECOGNIZED = -1
}
export declare function runStateFromJSON(object: any): RunState;
export declare function runStateToJSON(object: RunState): string;
/** PushUpdateRequest is one message of a pushed update stream. */
export interface PushUpdateRequest {
    /** Header first (run, round, worker, weight, codec, tensors, sha256), then chunks. */
    message: StreamMessage | undefined;
}
/** PushUpdateResponse acknowledges a push. */
export interface PushUpdateResponse {
    /** True once the update counts in the round's aggregate. */
    committed: boolean;
    /** Bytes received (resume from here after a cut when not committed). */
    receivedBytes: number;
    /** Workers committed to the round so far. */
    contributors: number;
}
/** PullUpdateRequest names a round. */
export interface PullUpdateRequest {
    /**
     * Deprecated: old name of run_id; read when run_id is empty.
     *
     * @deprecated
     */
    jobId: string;
    /** Round. */
    round: number;
    /** Wire codec wanted; unset means the job's codec. */
    codec: Codec;
    /** Resume from this payload offset. */
    offset: number;
    /**
     * Seconds to wait for the round to close; unset means the run's round timeout (+ 60 s), 0
     * means do not wait (answer ROUND_STILL_OPEN at once if the round is still open).
     */
    timeoutSeconds?: number | undefined;
    /** The DiLoCo run. */
    runId: string;
    /**
     * The worker pulling (optional): a worker whose committed update of the open round was lost
     * is answered PUSH_LOST instead of waiting for a round that may never close.
     */
    workerId: string;
}
/** PullUpdateResponse is one message of the update stream. */
export interface PullUpdateResponse {
    /** Header first, then chunks. */
    message: StreamMessage | undefined;
    /** Workers whose updates made up the round (in the first message). */
    contributors: number;
}
/** PushParametersRequest is one message of a parameter stream. */
export interface PushParametersRequest {
    /** Header first, then chunks. */
    message: StreamMessage | undefined;
}
/** PushParametersResponse tells whether the parameters were taken. */
export interface PushParametersResponse {
    /** True when these became θ0; false when the job already had parameters. */
    accepted: boolean;
    /** The job's current round. */
    round: number;
}
/** PullParametersRequest names a run. */
export interface PullParametersRequest {
    /**
     * Deprecated: old name of run_id; read when run_id is empty.
     *
     * @deprecated
     */
    jobId: string;
    /** Resume from this payload offset. */
    offset: number;
    /** The DiLoCo run. */
    runId: string;
}
/** PullParametersResponse is one message of the parameter stream. */
export interface PullParametersResponse {
    /** Header first (its round is the round these parameters start), then chunks. */
    message: StreamMessage | undefined;
}
/** GetRoundRequest names a run. */
export interface GetRoundRequest {
    /**
     * Deprecated: old name of run_id; read when run_id is empty.
     *
     * @deprecated
     */
    jobId: string;
    /** The DiLoCo run. */
    runId: string;
}
/** GetRoundResponse describes the current round. */
export interface GetRoundResponse {
    /**
     * Deprecated: old name of run_id; the server fills both.
     *
     * @deprecated
     */
    jobId: string;
    /** Current round. */
    round: number;
    /** State of that round. */
    state: RoundState;
    /** Workers committed. */
    committedWorkers: string[];
    /**
     * Workers expected: those the run's scheduler named (SetExpectedWorkers), else the workers that
     * pushed to the run so far.
     */
    expectedWorkers: string[];
    /** Pushes in flight. */
    pushesInFlight: number;
    /** The DiLoCo run. */
    runId: string;
}
/** OpenJobRequest configures aggregation for a run. */
export interface OpenJobRequest {
    /**
     * Deprecated: old name of run_id; read when run_id is empty.
     *
     * @deprecated
     */
    jobId: string;
    /** Number of workers expected to push each round. */
    expectedWorkers: number;
    /**
     * Fewest committed workers that may close a round once round_timeout_seconds passed; 0 means 1
     * (a round needs a commit to close).
     */
    quorum: number;
    /**
     * Seconds after the first commit of a round after which a quorum closes it; 0 (the default)
     * means no timeout: every expected worker must commit.
     */
    roundTimeoutSeconds: number;
    /** Outer learning rate; unset means 0.7 (0 is a learning rate of 0). */
    outerLr?: number | undefined;
    /** Outer Nesterov momentum in [0, 1); unset means 0.9, 0 means plain SGD outer steps. */
    outerMomentum?: number | undefined;
    /** Codec the update is served in by default. */
    codec: Codec;
    /** Number of rounds; 0 means unbounded. */
    rounds: number;
    /** The DiLoCo run (the id the workers push under). */
    runId: string;
    /**
     * The peer id of the scheduler that owns the run, the one peer whose SetExpectedWorkers is
     * accepted (the job bridge fills in its aggregate job's owner); empty keeps the run's owner.
     */
    ownerId: string;
}
/** OpenJobResponse tells where the run stands (a restarted server resumes). */
export interface OpenJobResponse {
    /** Current round (non-zero when resumed from saved state). */
    round: number;
    /** True when state was loaded from disk. */
    resumed: boolean;
}
/** CloseJobRequest names a run. */
export interface CloseJobRequest {
    /**
     * Deprecated: old name of run_id; read when run_id is empty.
     *
     * @deprecated
     */
    jobId: string;
    /** Also delete the saved state. */
    purge: boolean;
    /** The DiLoCo run. */
    runId: string;
}
/** CloseJobResponse is empty. */
export interface CloseJobResponse {
}
/** WatchRoundRequest names a run. */
export interface WatchRoundRequest {
    /** The DiLoCo run. */
    runId: string;
}
/** RoundStatus is the state of a run's current round at one moment. */
export interface RoundStatus {
    /** The DiLoCo run. */
    runId: string;
    /** Current round (the last one once the run finished). */
    round: number;
    /**
     * State of that round: CLOSED from the moment it stops taking pushes (its update is being
     * computed) until the next round opens.
     */
    state: RoundState;
    /** Workers whose update of the round counts so far, sorted. */
    committedWorkers: string[];
    /**
     * How many workers the run expects each round: as many as are named in expected_worker_ids,
     * else OpenJob's expected_workers.
     */
    expectedWorkers: number;
    /** Number of rounds of the run; 0 means unbounded. */
    rounds: number;
    /** Where the run is as a whole; FINISHED and CLOSED end a WatchRound stream. */
    runState: RunState;
    /** The workers the run's scheduler named (SetExpectedWorkers), sorted; empty: expected by count. */
    expectedWorkerIds: string[];
}
/** SetExpectedWorkersRequest names the workers a run expects. */
export interface SetExpectedWorkersRequest {
    /** The DiLoCo run. */
    runId: string;
    /**
     * The workers (their peer ids, as their pushes name them); duplicates count once, empty means
     * OpenJob's expected_workers by count.
     */
    workerIds: string[];
}
/** SetExpectedWorkersResponse tells the state of the run's current round after the change. */
export interface SetExpectedWorkersResponse {
    /** The state (a round the change completed is already closing). */
    status: RoundStatus | undefined;
}
/** WatchRoundResponse is one state of the run's current round. */
export interface WatchRoundResponse {
    /** The state. */
    status: RoundStatus | undefined;
}
export declare const PushUpdateRequest: MessageFns<PushUpdateRequest>;
export declare const PushUpdateResponse: MessageFns<PushUpdateResponse>;
export declare const PullUpdateRequest: MessageFns<PullUpdateRequest>;
export declare const PullUpdateResponse: MessageFns<PullUpdateResponse>;
export declare const PushParametersRequest: MessageFns<PushParametersRequest>;
export declare const PushParametersResponse: MessageFns<PushParametersResponse>;
export declare const PullParametersRequest: MessageFns<PullParametersRequest>;
export declare const PullParametersResponse: MessageFns<PullParametersResponse>;
export declare const GetRoundRequest: MessageFns<GetRoundRequest>;
export declare const GetRoundResponse: MessageFns<GetRoundResponse>;
export declare const OpenJobRequest: MessageFns<OpenJobRequest>;
export declare const OpenJobResponse: MessageFns<OpenJobResponse>;
export declare const CloseJobRequest: MessageFns<CloseJobRequest>;
export declare const CloseJobResponse: MessageFns<CloseJobResponse>;
export declare const WatchRoundRequest: MessageFns<WatchRoundRequest>;
export declare const RoundStatus: MessageFns<RoundStatus>;
export declare const SetExpectedWorkersRequest: MessageFns<SetExpectedWorkersRequest>;
export declare const SetExpectedWorkersResponse: MessageFns<SetExpectedWorkersResponse>;
export declare const WatchRoundResponse: MessageFns<WatchRoundResponse>;
/**
 * ParameterServerService aggregates DiLoCo pseudo-gradients for jobs of class "aggregate":
 * workers push their weighted deltas for a round, the server averages them in fp32, takes
 * one outer Nesterov step, and serves the resulting update to every worker. The server applies
 * exactly the update it serves (in the run's codec), so its θ and every worker's θ are
 * bit-identical after every round.
 *
 * A round lives in the server's memory: a push is held until it commits, then added to the
 * round's sum; a push may wait at its header (before the server's go-ahead) until memory is
 * free. θ and the momentum buffer are saved after each round's update is served; a restarted
 * server resumes at the last saved round, and the updates committed to the round that was open
 * are lost: their workers are told so when they pull the round (PUSH_LOST) and push again.
 *
 * Every request names the DiLoCo run in `run_id` (a run spans many jobs: the trainers' and the
 * aggregate job's). `job_id` is the old name of the same field: a server reads it only when
 * `run_id` is empty, so clients written against it keep working.
 */
export type ParameterServerServiceService = typeof ParameterServerServiceService;
export declare const ParameterServerServiceService: {
    /**
     * OpenJob starts aggregation for a run (called through the job bridge of the run's "aggregate"
     * job, OpenRun).
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a run id: 1-128 letters, digits, '.', '_' or '-',
     *     starting with a letter or digit.
     *   INVALID_ARGUMENT BAD_CODEC: codec is not a known value.
     *   INVALID_ARGUMENT BAD_RUN_CONFIG: expected_workers, quorum, timeout, outer_lr or
     *     outer_momentum is out of range.
     *   INVALID_ARGUMENT BAD_WORKER_ID: owner_id is set and is not a peer id.
     */
    readonly openJob: {
        readonly path: "/tendril.paramserver.v1.ParameterServerService/OpenJob";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: OpenJobRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => OpenJobRequest;
        readonly responseSerialize: (value: OpenJobResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => OpenJobResponse;
    };
    /**
     * SetExpectedWorkers names the workers a run expects each round; only the run's owner (the
     * scheduler named by OpenJob's owner_id) may call it. From then on a round closes as soon as
     * every named worker committed (or, round_timeout_seconds after its first commit, once a
     * quorum did: at most as many as are named): a worker the scheduler declared lost is left
     * out and no longer waited for, a worker that joined (or rejoined) the run is added. An empty
     * list expects OpenJob's expected_workers again, by count. The names are saved with the run's
     * state: a restarted server and a later OpenJob keep them.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   INVALID_ARGUMENT BAD_WORKER_ID: a worker id is not a peer id (1-128 letters, digits, '.',
     *     '_', '-', ':' or '@', starting with a letter or digit).
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   PERMISSION_DENIED NOT_RUN_OWNER: the caller is not the run's owner, or the run was opened
     *     without an owner_id.
     */
    readonly setExpectedWorkers: {
        readonly path: "/tendril.paramserver.v1.ParameterServerService/SetExpectedWorkers";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: SetExpectedWorkersRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SetExpectedWorkersRequest;
        readonly responseSerialize: (value: SetExpectedWorkersResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SetExpectedWorkersResponse;
    };
    /**
     * CloseJob ends aggregation for a run: pushes are refused from then on; θ and the last updates
     * stay served unless purge is set.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (a purge of a saved run still succeeds).
     */
    readonly closeJob: {
        readonly path: "/tendril.paramserver.v1.ParameterServerService/CloseJob";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: CloseJobRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => CloseJobRequest;
        readonly responseSerialize: (value: CloseJobResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => CloseJobResponse;
    };
    /**
     * PushUpdate streams one worker's pseudo-gradient for a round (header, then chunks, or the bytes
     * over the data plane; see tendril.tensor.v1.StreamMessage).
     *
     * Errors:
     *   INVALID_ARGUMENT HEADER_MISSING, UNEXPECTED_HEADER: the stream does not start with exactly
     *     one header.
     *   INVALID_ARGUMENT BAD_HEADER, BAD_CODEC, OUT_OF_ORDER, EMPTY_CHUNK, TOO_LONG, BAD_PAYLOAD: the
     *     stream breaks its contract (see tendril.tensor.v1.StreamMessage).
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the payload's digest is not the header's; send it
     *     again.
     *   INVALID_ARGUMENT BAD_RUN_ID: the header's run_id is not a valid run id.
     *   INVALID_ARGUMENT WORKER_ID_MISSING, BAD_WEIGHT: worker_id is empty, or weight is not a finite
     *     number > 0.
     *   INVALID_ARGUMENT BAD_WORKER_ID: worker_id is not a peer id.
     *   INVALID_ARGUMENT STREAM_ID_REUSED: the stream_id already carries another payload.
     *   INVALID_ARGUMENT LAYOUT_MISMATCH: the update's tensors differ from the run's parameters, or
     *     a CODEC_SPARSE update's indices lie outside their chunks or repeat; it was not counted.
     *   INVALID_ARGUMENT NON_FINITE_UPDATE: the update holds NaN or Inf; it was not counted.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (yet): its aggregate job calls OpenJob
     *     first.
     *   FAILED_PRECONDITION NO_PARAMETERS: the run has no θ0 yet (PushParameters comes first).
     *   FAILED_PRECONDITION RUN_CLOSED, RUN_FINISHED: the run was closed, or its last round closed.
     *   FAILED_PRECONDITION ROUND_CLOSED: the round closed (before or during the push); the message
     *     names the open round.
     *   FAILED_PRECONDITION ROUND_NOT_OPEN: the round is after the open one.
     *   ALREADY_EXISTS ALREADY_COMMITTED: the worker already committed for the round.
     *   INTERNAL AGGREGATION_FAILED: closing the previous round failed; the run takes pushes after
     *     OpenJob.
     */
    readonly pushUpdate: {
        readonly path: "/tendril.paramserver.v1.ParameterServerService/PushUpdate";
        readonly requestStream: true;
        readonly responseStream: false;
        readonly requestSerialize: (value: PushUpdateRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PushUpdateRequest;
        readonly responseSerialize: (value: PushUpdateResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PushUpdateResponse;
    };
    /**
     * PullUpdate waits until a round closes, then streams its outer update.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   INVALID_ARGUMENT BAD_CODEC: codec is not a known value.
     *   INVALID_ARGUMENT BAD_TIMEOUT: timeout_seconds is negative, NaN or infinite.
     *   INVALID_ARGUMENT BAD_WORKER_ID: worker_id is set and is not a peer id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   FAILED_PRECONDITION ROUND_NOT_OPEN: the round is after the open one.
     *   FAILED_PRECONDITION UPDATE_GONE: the round's update is no longer kept (updates stay in memory
     *     for the last 4 rounds at most, while the memory is not needed for pushes, and not across a
     *     restart); pull θ instead.
     *   FAILED_PRECONDITION PUSH_LOST: worker_id committed an update for this round, the open one,
     *     and the server lost it (it restarted): push it again.
     *   FAILED_PRECONDITION RUN_CLOSED: the run was closed before the round closed.
     *   DEADLINE_EXCEEDED ROUND_STILL_OPEN: the wait ran out before the round closed; pull again
     *     later.
     *   INTERNAL AGGREGATION_FAILED: computing the round's update failed.
     *   OUT_OF_RANGE BAD_OFFSET: offset is past the end of the payload.
     *   ABORTED PAYLOAD_REPLACED: the payload was replaced as it was opened; ask again.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection (see tendril.tensor.v1.StreamMessage)
     *     broke before the payload was through; pull again from the bytes received.
     */
    readonly pullUpdate: {
        readonly path: "/tendril.paramserver.v1.ParameterServerService/PullUpdate";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: PullUpdateRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PullUpdateRequest;
        readonly responseSerialize: (value: PullUpdateResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PullUpdateResponse;
    };
    /**
     * PushParameters offers the initial parameters θ0 of a run (the first one wins).
     *
     * Errors:
     *   INVALID_ARGUMENT HEADER_MISSING, UNEXPECTED_HEADER: the stream does not start with exactly
     *     one header.
     *   INVALID_ARGUMENT BAD_HEADER, BAD_CODEC, OUT_OF_ORDER, EMPTY_CHUNK, TOO_LONG, BAD_PAYLOAD: the
     *     stream breaks its contract (see tendril.tensor.v1.StreamMessage).
     *   INVALID_ARGUMENT INCOMPLETE: the stream ended before its last byte.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection (see tendril.tensor.v1.StreamMessage)
     *     broke before the last byte; push again.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the payload's digest is not the header's; send it
     *     again.
     *   INVALID_ARGUMENT BAD_RUN_ID: the header's run_id is not a valid run id.
     *   INVALID_ARGUMENT BAD_WORKER_ID: the header's worker_id is set and is not a peer id.
     *   INVALID_ARGUMENT STREAM_ID_REUSED: the stream_id already carries another payload.
     *   INVALID_ARGUMENT NON_FINITE_PARAMETERS: θ0 holds NaN or Inf.
     *   FAILED_PRECONDITION BAD_OFFSET: start_offset is not where this stream stands; resume from the
     *     byte named.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (yet).
     *   FAILED_PRECONDITION RUN_CLOSED: the run was closed.
     *   INTERNAL AGGREGATION_FAILED: closing a round of the run failed; it takes pushes again after
     *     OpenJob.
     */
    readonly pushParameters: {
        readonly path: "/tendril.paramserver.v1.ParameterServerService/PushParameters";
        readonly requestStream: true;
        readonly responseStream: false;
        readonly requestSerialize: (value: PushParametersRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PushParametersRequest;
        readonly responseSerialize: (value: PushParametersResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PushParametersResponse;
    };
    /**
     * PullParameters streams the current parameters θ of a run (to join mid-run).
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   FAILED_PRECONDITION NO_PARAMETERS: the run has no θ0 yet.
     *   OUT_OF_RANGE BAD_OFFSET: offset is past the end of the payload.
     *   ABORTED PAYLOAD_REPLACED: the payload was replaced as it was opened; ask again.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection (see tendril.tensor.v1.StreamMessage)
     *     broke before the payload was through; pull again from the bytes received.
     */
    readonly pullParameters: {
        readonly path: "/tendril.paramserver.v1.ParameterServerService/PullParameters";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: PullParametersRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PullParametersRequest;
        readonly responseSerialize: (value: PullParametersResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PullParametersResponse;
    };
    /**
     * GetRound tells the state of a run's current round.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   INTERNAL AGGREGATION_FAILED: closing the current round failed; OpenJob resumes the run.
     */
    readonly getRound: {
        readonly path: "/tendril.paramserver.v1.ParameterServerService/GetRound";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetRoundRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetRoundRequest;
        readonly responseSerialize: (value: GetRoundResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetRoundResponse;
    };
    /**
     * WatchRound streams the state of a run's current round: the state now, then one message per
     * change (OpenJob, a committed push, the round closing, the next round opening, CloseJob).
     * The stream ends after the message whose run_state is RUN_STATE_FINISHED (the last round
     * closed and its update is served) or RUN_STATE_CLOSED (CloseJob). A watcher that falls 1024
     * changes behind is cut off; a new watch starts again from the state now, so nothing is lost
     * by watching again.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (OpenJob first; also after a restart that
     *     could not reload it).
     *   INTERNAL AGGREGATION_FAILED: closing the current round failed; OpenJob resumes the run.
     *   ABORTED WATCH_OVERFLOW: the watcher fell 1024 changes behind and was cut off; watch again.
     */
    readonly watchRound: {
        readonly path: "/tendril.paramserver.v1.ParameterServerService/WatchRound";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: WatchRoundRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => WatchRoundRequest;
        readonly responseSerialize: (value: WatchRoundResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => WatchRoundResponse;
    };
};
export interface ParameterServerServiceServer extends UntypedServiceImplementation {
    /**
     * OpenJob starts aggregation for a run (called through the job bridge of the run's "aggregate"
     * job, OpenRun).
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a run id: 1-128 letters, digits, '.', '_' or '-',
     *     starting with a letter or digit.
     *   INVALID_ARGUMENT BAD_CODEC: codec is not a known value.
     *   INVALID_ARGUMENT BAD_RUN_CONFIG: expected_workers, quorum, timeout, outer_lr or
     *     outer_momentum is out of range.
     *   INVALID_ARGUMENT BAD_WORKER_ID: owner_id is set and is not a peer id.
     */
    openJob: handleUnaryCall<OpenJobRequest, OpenJobResponse>;
    /**
     * SetExpectedWorkers names the workers a run expects each round; only the run's owner (the
     * scheduler named by OpenJob's owner_id) may call it. From then on a round closes as soon as
     * every named worker committed (or, round_timeout_seconds after its first commit, once a
     * quorum did: at most as many as are named): a worker the scheduler declared lost is left
     * out and no longer waited for, a worker that joined (or rejoined) the run is added. An empty
     * list expects OpenJob's expected_workers again, by count. The names are saved with the run's
     * state: a restarted server and a later OpenJob keep them.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   INVALID_ARGUMENT BAD_WORKER_ID: a worker id is not a peer id (1-128 letters, digits, '.',
     *     '_', '-', ':' or '@', starting with a letter or digit).
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   PERMISSION_DENIED NOT_RUN_OWNER: the caller is not the run's owner, or the run was opened
     *     without an owner_id.
     */
    setExpectedWorkers: handleUnaryCall<SetExpectedWorkersRequest, SetExpectedWorkersResponse>;
    /**
     * CloseJob ends aggregation for a run: pushes are refused from then on; θ and the last updates
     * stay served unless purge is set.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (a purge of a saved run still succeeds).
     */
    closeJob: handleUnaryCall<CloseJobRequest, CloseJobResponse>;
    /**
     * PushUpdate streams one worker's pseudo-gradient for a round (header, then chunks, or the bytes
     * over the data plane; see tendril.tensor.v1.StreamMessage).
     *
     * Errors:
     *   INVALID_ARGUMENT HEADER_MISSING, UNEXPECTED_HEADER: the stream does not start with exactly
     *     one header.
     *   INVALID_ARGUMENT BAD_HEADER, BAD_CODEC, OUT_OF_ORDER, EMPTY_CHUNK, TOO_LONG, BAD_PAYLOAD: the
     *     stream breaks its contract (see tendril.tensor.v1.StreamMessage).
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the payload's digest is not the header's; send it
     *     again.
     *   INVALID_ARGUMENT BAD_RUN_ID: the header's run_id is not a valid run id.
     *   INVALID_ARGUMENT WORKER_ID_MISSING, BAD_WEIGHT: worker_id is empty, or weight is not a finite
     *     number > 0.
     *   INVALID_ARGUMENT BAD_WORKER_ID: worker_id is not a peer id.
     *   INVALID_ARGUMENT STREAM_ID_REUSED: the stream_id already carries another payload.
     *   INVALID_ARGUMENT LAYOUT_MISMATCH: the update's tensors differ from the run's parameters, or
     *     a CODEC_SPARSE update's indices lie outside their chunks or repeat; it was not counted.
     *   INVALID_ARGUMENT NON_FINITE_UPDATE: the update holds NaN or Inf; it was not counted.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (yet): its aggregate job calls OpenJob
     *     first.
     *   FAILED_PRECONDITION NO_PARAMETERS: the run has no θ0 yet (PushParameters comes first).
     *   FAILED_PRECONDITION RUN_CLOSED, RUN_FINISHED: the run was closed, or its last round closed.
     *   FAILED_PRECONDITION ROUND_CLOSED: the round closed (before or during the push); the message
     *     names the open round.
     *   FAILED_PRECONDITION ROUND_NOT_OPEN: the round is after the open one.
     *   ALREADY_EXISTS ALREADY_COMMITTED: the worker already committed for the round.
     *   INTERNAL AGGREGATION_FAILED: closing the previous round failed; the run takes pushes after
     *     OpenJob.
     */
    pushUpdate: handleClientStreamingCall<PushUpdateRequest, PushUpdateResponse>;
    /**
     * PullUpdate waits until a round closes, then streams its outer update.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   INVALID_ARGUMENT BAD_CODEC: codec is not a known value.
     *   INVALID_ARGUMENT BAD_TIMEOUT: timeout_seconds is negative, NaN or infinite.
     *   INVALID_ARGUMENT BAD_WORKER_ID: worker_id is set and is not a peer id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   FAILED_PRECONDITION ROUND_NOT_OPEN: the round is after the open one.
     *   FAILED_PRECONDITION UPDATE_GONE: the round's update is no longer kept (updates stay in memory
     *     for the last 4 rounds at most, while the memory is not needed for pushes, and not across a
     *     restart); pull θ instead.
     *   FAILED_PRECONDITION PUSH_LOST: worker_id committed an update for this round, the open one,
     *     and the server lost it (it restarted): push it again.
     *   FAILED_PRECONDITION RUN_CLOSED: the run was closed before the round closed.
     *   DEADLINE_EXCEEDED ROUND_STILL_OPEN: the wait ran out before the round closed; pull again
     *     later.
     *   INTERNAL AGGREGATION_FAILED: computing the round's update failed.
     *   OUT_OF_RANGE BAD_OFFSET: offset is past the end of the payload.
     *   ABORTED PAYLOAD_REPLACED: the payload was replaced as it was opened; ask again.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection (see tendril.tensor.v1.StreamMessage)
     *     broke before the payload was through; pull again from the bytes received.
     */
    pullUpdate: handleServerStreamingCall<PullUpdateRequest, PullUpdateResponse>;
    /**
     * PushParameters offers the initial parameters θ0 of a run (the first one wins).
     *
     * Errors:
     *   INVALID_ARGUMENT HEADER_MISSING, UNEXPECTED_HEADER: the stream does not start with exactly
     *     one header.
     *   INVALID_ARGUMENT BAD_HEADER, BAD_CODEC, OUT_OF_ORDER, EMPTY_CHUNK, TOO_LONG, BAD_PAYLOAD: the
     *     stream breaks its contract (see tendril.tensor.v1.StreamMessage).
     *   INVALID_ARGUMENT INCOMPLETE: the stream ended before its last byte.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection (see tendril.tensor.v1.StreamMessage)
     *     broke before the last byte; push again.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the payload's digest is not the header's; send it
     *     again.
     *   INVALID_ARGUMENT BAD_RUN_ID: the header's run_id is not a valid run id.
     *   INVALID_ARGUMENT BAD_WORKER_ID: the header's worker_id is set and is not a peer id.
     *   INVALID_ARGUMENT STREAM_ID_REUSED: the stream_id already carries another payload.
     *   INVALID_ARGUMENT NON_FINITE_PARAMETERS: θ0 holds NaN or Inf.
     *   FAILED_PRECONDITION BAD_OFFSET: start_offset is not where this stream stands; resume from the
     *     byte named.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (yet).
     *   FAILED_PRECONDITION RUN_CLOSED: the run was closed.
     *   INTERNAL AGGREGATION_FAILED: closing a round of the run failed; it takes pushes again after
     *     OpenJob.
     */
    pushParameters: handleClientStreamingCall<PushParametersRequest, PushParametersResponse>;
    /**
     * PullParameters streams the current parameters θ of a run (to join mid-run).
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   FAILED_PRECONDITION NO_PARAMETERS: the run has no θ0 yet.
     *   OUT_OF_RANGE BAD_OFFSET: offset is past the end of the payload.
     *   ABORTED PAYLOAD_REPLACED: the payload was replaced as it was opened; ask again.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection (see tendril.tensor.v1.StreamMessage)
     *     broke before the payload was through; pull again from the bytes received.
     */
    pullParameters: handleServerStreamingCall<PullParametersRequest, PullParametersResponse>;
    /**
     * GetRound tells the state of a run's current round.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   INTERNAL AGGREGATION_FAILED: closing the current round failed; OpenJob resumes the run.
     */
    getRound: handleUnaryCall<GetRoundRequest, GetRoundResponse>;
    /**
     * WatchRound streams the state of a run's current round: the state now, then one message per
     * change (OpenJob, a committed push, the round closing, the next round opening, CloseJob).
     * The stream ends after the message whose run_state is RUN_STATE_FINISHED (the last round
     * closed and its update is served) or RUN_STATE_CLOSED (CloseJob). A watcher that falls 1024
     * changes behind is cut off; a new watch starts again from the state now, so nothing is lost
     * by watching again.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (OpenJob first; also after a restart that
     *     could not reload it).
     *   INTERNAL AGGREGATION_FAILED: closing the current round failed; OpenJob resumes the run.
     *   ABORTED WATCH_OVERFLOW: the watcher fell 1024 changes behind and was cut off; watch again.
     */
    watchRound: handleServerStreamingCall<WatchRoundRequest, WatchRoundResponse>;
}
export interface ParameterServerServiceClient extends Client {
    /**
     * OpenJob starts aggregation for a run (called through the job bridge of the run's "aggregate"
     * job, OpenRun).
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a run id: 1-128 letters, digits, '.', '_' or '-',
     *     starting with a letter or digit.
     *   INVALID_ARGUMENT BAD_CODEC: codec is not a known value.
     *   INVALID_ARGUMENT BAD_RUN_CONFIG: expected_workers, quorum, timeout, outer_lr or
     *     outer_momentum is out of range.
     *   INVALID_ARGUMENT BAD_WORKER_ID: owner_id is set and is not a peer id.
     */
    openJob(request: OpenJobRequest, callback: (error: ServiceError | null, response: OpenJobResponse) => void): ClientUnaryCall;
    openJob(request: OpenJobRequest, metadata: Metadata, callback: (error: ServiceError | null, response: OpenJobResponse) => void): ClientUnaryCall;
    openJob(request: OpenJobRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: OpenJobResponse) => void): ClientUnaryCall;
    /**
     * SetExpectedWorkers names the workers a run expects each round; only the run's owner (the
     * scheduler named by OpenJob's owner_id) may call it. From then on a round closes as soon as
     * every named worker committed (or, round_timeout_seconds after its first commit, once a
     * quorum did: at most as many as are named): a worker the scheduler declared lost is left
     * out and no longer waited for, a worker that joined (or rejoined) the run is added. An empty
     * list expects OpenJob's expected_workers again, by count. The names are saved with the run's
     * state: a restarted server and a later OpenJob keep them.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   INVALID_ARGUMENT BAD_WORKER_ID: a worker id is not a peer id (1-128 letters, digits, '.',
     *     '_', '-', ':' or '@', starting with a letter or digit).
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   PERMISSION_DENIED NOT_RUN_OWNER: the caller is not the run's owner, or the run was opened
     *     without an owner_id.
     */
    setExpectedWorkers(request: SetExpectedWorkersRequest, callback: (error: ServiceError | null, response: SetExpectedWorkersResponse) => void): ClientUnaryCall;
    setExpectedWorkers(request: SetExpectedWorkersRequest, metadata: Metadata, callback: (error: ServiceError | null, response: SetExpectedWorkersResponse) => void): ClientUnaryCall;
    setExpectedWorkers(request: SetExpectedWorkersRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: SetExpectedWorkersResponse) => void): ClientUnaryCall;
    /**
     * CloseJob ends aggregation for a run: pushes are refused from then on; θ and the last updates
     * stay served unless purge is set.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (a purge of a saved run still succeeds).
     */
    closeJob(request: CloseJobRequest, callback: (error: ServiceError | null, response: CloseJobResponse) => void): ClientUnaryCall;
    closeJob(request: CloseJobRequest, metadata: Metadata, callback: (error: ServiceError | null, response: CloseJobResponse) => void): ClientUnaryCall;
    closeJob(request: CloseJobRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: CloseJobResponse) => void): ClientUnaryCall;
    /**
     * PushUpdate streams one worker's pseudo-gradient for a round (header, then chunks, or the bytes
     * over the data plane; see tendril.tensor.v1.StreamMessage).
     *
     * Errors:
     *   INVALID_ARGUMENT HEADER_MISSING, UNEXPECTED_HEADER: the stream does not start with exactly
     *     one header.
     *   INVALID_ARGUMENT BAD_HEADER, BAD_CODEC, OUT_OF_ORDER, EMPTY_CHUNK, TOO_LONG, BAD_PAYLOAD: the
     *     stream breaks its contract (see tendril.tensor.v1.StreamMessage).
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the payload's digest is not the header's; send it
     *     again.
     *   INVALID_ARGUMENT BAD_RUN_ID: the header's run_id is not a valid run id.
     *   INVALID_ARGUMENT WORKER_ID_MISSING, BAD_WEIGHT: worker_id is empty, or weight is not a finite
     *     number > 0.
     *   INVALID_ARGUMENT BAD_WORKER_ID: worker_id is not a peer id.
     *   INVALID_ARGUMENT STREAM_ID_REUSED: the stream_id already carries another payload.
     *   INVALID_ARGUMENT LAYOUT_MISMATCH: the update's tensors differ from the run's parameters, or
     *     a CODEC_SPARSE update's indices lie outside their chunks or repeat; it was not counted.
     *   INVALID_ARGUMENT NON_FINITE_UPDATE: the update holds NaN or Inf; it was not counted.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (yet): its aggregate job calls OpenJob
     *     first.
     *   FAILED_PRECONDITION NO_PARAMETERS: the run has no θ0 yet (PushParameters comes first).
     *   FAILED_PRECONDITION RUN_CLOSED, RUN_FINISHED: the run was closed, or its last round closed.
     *   FAILED_PRECONDITION ROUND_CLOSED: the round closed (before or during the push); the message
     *     names the open round.
     *   FAILED_PRECONDITION ROUND_NOT_OPEN: the round is after the open one.
     *   ALREADY_EXISTS ALREADY_COMMITTED: the worker already committed for the round.
     *   INTERNAL AGGREGATION_FAILED: closing the previous round failed; the run takes pushes after
     *     OpenJob.
     */
    pushUpdate(callback: (error: ServiceError | null, response: PushUpdateResponse) => void): ClientWritableStream<PushUpdateRequest>;
    pushUpdate(metadata: Metadata, callback: (error: ServiceError | null, response: PushUpdateResponse) => void): ClientWritableStream<PushUpdateRequest>;
    pushUpdate(options: Partial<CallOptions>, callback: (error: ServiceError | null, response: PushUpdateResponse) => void): ClientWritableStream<PushUpdateRequest>;
    pushUpdate(metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: PushUpdateResponse) => void): ClientWritableStream<PushUpdateRequest>;
    /**
     * PullUpdate waits until a round closes, then streams its outer update.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   INVALID_ARGUMENT BAD_CODEC: codec is not a known value.
     *   INVALID_ARGUMENT BAD_TIMEOUT: timeout_seconds is negative, NaN or infinite.
     *   INVALID_ARGUMENT BAD_WORKER_ID: worker_id is set and is not a peer id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   FAILED_PRECONDITION ROUND_NOT_OPEN: the round is after the open one.
     *   FAILED_PRECONDITION UPDATE_GONE: the round's update is no longer kept (updates stay in memory
     *     for the last 4 rounds at most, while the memory is not needed for pushes, and not across a
     *     restart); pull θ instead.
     *   FAILED_PRECONDITION PUSH_LOST: worker_id committed an update for this round, the open one,
     *     and the server lost it (it restarted): push it again.
     *   FAILED_PRECONDITION RUN_CLOSED: the run was closed before the round closed.
     *   DEADLINE_EXCEEDED ROUND_STILL_OPEN: the wait ran out before the round closed; pull again
     *     later.
     *   INTERNAL AGGREGATION_FAILED: computing the round's update failed.
     *   OUT_OF_RANGE BAD_OFFSET: offset is past the end of the payload.
     *   ABORTED PAYLOAD_REPLACED: the payload was replaced as it was opened; ask again.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection (see tendril.tensor.v1.StreamMessage)
     *     broke before the payload was through; pull again from the bytes received.
     */
    pullUpdate(request: PullUpdateRequest, options?: Partial<CallOptions>): ClientReadableStream<PullUpdateResponse>;
    pullUpdate(request: PullUpdateRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<PullUpdateResponse>;
    /**
     * PushParameters offers the initial parameters θ0 of a run (the first one wins).
     *
     * Errors:
     *   INVALID_ARGUMENT HEADER_MISSING, UNEXPECTED_HEADER: the stream does not start with exactly
     *     one header.
     *   INVALID_ARGUMENT BAD_HEADER, BAD_CODEC, OUT_OF_ORDER, EMPTY_CHUNK, TOO_LONG, BAD_PAYLOAD: the
     *     stream breaks its contract (see tendril.tensor.v1.StreamMessage).
     *   INVALID_ARGUMENT INCOMPLETE: the stream ended before its last byte.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection (see tendril.tensor.v1.StreamMessage)
     *     broke before the last byte; push again.
     *   DATA_LOSS SHA256_MISMATCH, DIGEST_MISMATCH: the payload's digest is not the header's; send it
     *     again.
     *   INVALID_ARGUMENT BAD_RUN_ID: the header's run_id is not a valid run id.
     *   INVALID_ARGUMENT BAD_WORKER_ID: the header's worker_id is set and is not a peer id.
     *   INVALID_ARGUMENT STREAM_ID_REUSED: the stream_id already carries another payload.
     *   INVALID_ARGUMENT NON_FINITE_PARAMETERS: θ0 holds NaN or Inf.
     *   FAILED_PRECONDITION BAD_OFFSET: start_offset is not where this stream stands; resume from the
     *     byte named.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (yet).
     *   FAILED_PRECONDITION RUN_CLOSED: the run was closed.
     *   INTERNAL AGGREGATION_FAILED: closing a round of the run failed; it takes pushes again after
     *     OpenJob.
     */
    pushParameters(callback: (error: ServiceError | null, response: PushParametersResponse) => void): ClientWritableStream<PushParametersRequest>;
    pushParameters(metadata: Metadata, callback: (error: ServiceError | null, response: PushParametersResponse) => void): ClientWritableStream<PushParametersRequest>;
    pushParameters(options: Partial<CallOptions>, callback: (error: ServiceError | null, response: PushParametersResponse) => void): ClientWritableStream<PushParametersRequest>;
    pushParameters(metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: PushParametersResponse) => void): ClientWritableStream<PushParametersRequest>;
    /**
     * PullParameters streams the current parameters θ of a run (to join mid-run).
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   FAILED_PRECONDITION NO_PARAMETERS: the run has no θ0 yet.
     *   OUT_OF_RANGE BAD_OFFSET: offset is past the end of the payload.
     *   ABORTED PAYLOAD_REPLACED: the payload was replaced as it was opened; ask again.
     *   UNAVAILABLE DATA_CONNECTION_LOST: the data connection (see tendril.tensor.v1.StreamMessage)
     *     broke before the payload was through; pull again from the bytes received.
     */
    pullParameters(request: PullParametersRequest, options?: Partial<CallOptions>): ClientReadableStream<PullParametersResponse>;
    pullParameters(request: PullParametersRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<PullParametersResponse>;
    /**
     * GetRound tells the state of a run's current round.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here.
     *   INTERNAL AGGREGATION_FAILED: closing the current round failed; OpenJob resumes the run.
     */
    getRound(request: GetRoundRequest, callback: (error: ServiceError | null, response: GetRoundResponse) => void): ClientUnaryCall;
    getRound(request: GetRoundRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetRoundResponse) => void): ClientUnaryCall;
    getRound(request: GetRoundRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetRoundResponse) => void): ClientUnaryCall;
    /**
     * WatchRound streams the state of a run's current round: the state now, then one message per
     * change (OpenJob, a committed push, the round closing, the next round opening, CloseJob).
     * The stream ends after the message whose run_state is RUN_STATE_FINISHED (the last round
     * closed and its update is served) or RUN_STATE_CLOSED (CloseJob). A watcher that falls 1024
     * changes behind is cut off; a new watch starts again from the state now, so nothing is lost
     * by watching again.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_RUN_ID: run_id is not a valid run id.
     *   NOT_FOUND RUN_NOT_OPEN: the run is not open here (OpenJob first; also after a restart that
     *     could not reload it).
     *   INTERNAL AGGREGATION_FAILED: closing the current round failed; OpenJob resumes the run.
     *   ABORTED WATCH_OVERFLOW: the watcher fell 1024 changes behind and was cut off; watch again.
     */
    watchRound(request: WatchRoundRequest, options?: Partial<CallOptions>): ClientReadableStream<WatchRoundResponse>;
    watchRound(request: WatchRoundRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<WatchRoundResponse>;
}
export declare const ParameterServerServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): ParameterServerServiceClient;
    service: typeof ParameterServerServiceService;
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
