import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientUnaryCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Resources, WorkerRecord } from "../../common/v1/common";
/** OfferDecision is the scheduler's answer to an offer. */
export declare enum OfferDecision {
    /** OFFER_DECISION_UNSPECIFIED - Not set (treated as rejected). */
    OFFER_DECISION_UNSPECIFIED = 0,
    /** OFFER_DECISION_ACCEPTED - The scheduler takes the lease and will renew it. */
    OFFER_DECISION_ACCEPTED = 1,
    /** OFFER_DECISION_REJECTED - The scheduler does not want the offer: the worker frees it at once. */
    OFFER_DECISION_REJECTED = 2,
    UNRECOGNIZED = -1
}
export declare function offerDecisionFromJSON(object: any): OfferDecision;
export declare function offerDecisionToJSON(object: OfferDecision): string;
/** ProgressKind says what a progress event reports. */
export declare enum ProgressKind {
    /** PROGRESS_KIND_UNSPECIFIED - Not set. */
    PROGRESS_KIND_UNSPECIFIED = 0,
    /** PROGRESS_KIND_BATCH - One training batch finished (or several: see ReportProgressRequest.batches). */
    PROGRESS_KIND_BATCH = 1,
    /** PROGRESS_KIND_METRICS - Metrics of a finished round. */
    PROGRESS_KIND_METRICS = 2,
    /** PROGRESS_KIND_UPDATE_SENT - The executor is about to send its update. */
    PROGRESS_KIND_UPDATE_SENT = 3,
    /** PROGRESS_KIND_UPDATE_RECEIVED - The executor applied the round's outer update. */
    PROGRESS_KIND_UPDATE_RECEIVED = 4,
    /** PROGRESS_KIND_FINISHED - The executor finished its work. */
    PROGRESS_KIND_FINISHED = 5,
    UNRECOGNIZED = -1
}
export declare function progressKindFromJSON(object: any): ProgressKind;
export declare function progressKindToJSON(object: ProgressKind): string;
/** Directive is what a training job does next. */
export declare enum Directive {
    /** DIRECTIVE_UNSPECIFIED - Not set (treated as continue). */
    DIRECTIVE_UNSPECIFIED = 0,
    /** DIRECTIVE_CONTINUE - Keep training. */
    DIRECTIVE_CONTINUE = 1,
    /** DIRECTIVE_SCHEDULE_UPDATE - Send the update after batches_until_update more batches. */
    DIRECTIVE_SCHEDULE_UPDATE = 2,
    /** DIRECTIVE_DONE - Stop: the job is finished. */
    DIRECTIVE_DONE = 3,
    UNRECOGNIZED = -1
}
export declare function directiveFromJSON(object: any): Directive;
export declare function directiveToJSON(object: Directive): string;
/** OfferRequest is a worker's offer for one request. */
export interface OfferRequest {
    /** Offer id, unique at the worker. */
    offerId: string;
    /** The request being answered. */
    requestId: string;
    /** The offering worker and its service addresses. */
    worker: WorkerRecord | undefined;
    /** The temporary lease that holds the offered resources. */
    leaseId: string;
    /** Resources offered. */
    resources: Resources | undefined;
    /** Price asked. */
    price: number;
    /** The reservation vanishes at this instant unless the offer is accepted. */
    expiresAt: Date | undefined;
}
/** OfferResponse is the scheduler's decision. */
export interface OfferResponse {
    /** Accepted or rejected. */
    decision: OfferDecision;
    /** Why (for the worker's logs). */
    reason: string;
}
/** ReportProgressRequest is one progress event. */
export interface ReportProgressRequest {
    /** Job id. */
    jobId: string;
    /** Worker running the job. */
    workerId: string;
    /** What is reported. */
    kind: ProgressKind;
    /** Current DiLoCo round (0-based). */
    round: number;
    /** Samples in the batch (BATCH; summed over the batches the report covers). */
    batchSize: number;
    /** Seconds the batch took (BATCH; summed over the batches the report covers). */
    batchSeconds: number;
    /**
     * Named metrics, e.g. "loss" (BATCH: the sample-weighted mean over the batches the report
     * covers; METRICS).
     */
    metrics: {
        [key: string]: number;
    };
    /**
     * BATCH: how many consecutive batches this report covers, the last of them finished just
     * now; 0 (unset) means 1. A directive's batches_until_update counts from that last batch.
     */
    batches: number;
}
export interface ReportProgressRequest_MetricsEntry {
    key: string;
    value: number;
}
/** ReportProgressResponse carries the scheduler's directive. */
export interface ReportProgressResponse {
    /** What to do next. */
    directive: Directive;
    /**
     * With SCHEDULE_UPDATE: batches to run before sending the update (0: now), counted from
     * the last batch the report covers.
     */
    batchesUntilUpdate: number;
    /** The round the directive is for. */
    round: number;
}
/** AssignSliceRequest asks for a job's next slice. */
export interface AssignSliceRequest {
    /** Job id. */
    jobId: string;
    /** Worker asking. */
    workerId: string;
    /** Slices the worker already holds in its cache (preferred when eligible). */
    cachedSlices: string[];
}
/** SliceAssignment tells where to get a slice. */
export interface SliceAssignment {
    /** Data set id. */
    datasetId: string;
    /** Slice file name, e.g. "slice-00003.safetensors". */
    sliceName: string;
    /** Size in bytes. */
    sizeBytes: number;
    /** Hex sha256 of the file. */
    sha256: string;
    /** DataNodeService address serving the data set. */
    dataNodeAddress: string;
    /** Epoch the assignment belongs to (0-based). */
    epoch: number;
}
/** AssignSliceResponse carries the assignment. */
export interface AssignSliceResponse {
    /** The slice to use next. */
    assignment: SliceAssignment | undefined;
}
export declare const OfferRequest: MessageFns<OfferRequest>;
export declare const OfferResponse: MessageFns<OfferResponse>;
export declare const ReportProgressRequest: MessageFns<ReportProgressRequest>;
export declare const ReportProgressRequest_MetricsEntry: MessageFns<ReportProgressRequest_MetricsEntry>;
export declare const ReportProgressResponse: MessageFns<ReportProgressResponse>;
export declare const AssignSliceRequest: MessageFns<AssignSliceRequest>;
export declare const SliceAssignment: MessageFns<SliceAssignment>;
export declare const AssignSliceResponse: MessageFns<AssignSliceResponse>;
/**
 * AllocationService is served by every scheduler: workers call it to offer resources in
 * answer to a ResourceRequest.
 */
export type AllocationServiceService = typeof AllocationServiceService;
export declare const AllocationServiceService: {
    /**
     * Offer proposes a reservation to the scheduler. The scheduler answers ACCEPTED or
     * REJECTED, and may hold the call until it decides, but never past expires_at.
     *
     * Errors:
     *   INVALID_ARGUMENT MISSING_FIELD: a required field is empty (metadata "field" names it).
     *   INVALID_ARGUMENT BAD_EXPIRES_AT: expires_at is not a valid Timestamp.
     */
    readonly offer: {
        readonly path: "/tendril.scheduler.v1.AllocationService/Offer";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: OfferRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => OfferRequest;
        readonly responseSerialize: (value: OfferResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => OfferResponse;
    };
};
export interface AllocationServiceServer extends UntypedServiceImplementation {
    /**
     * Offer proposes a reservation to the scheduler. The scheduler answers ACCEPTED or
     * REJECTED, and may hold the call until it decides, but never past expires_at.
     *
     * Errors:
     *   INVALID_ARGUMENT MISSING_FIELD: a required field is empty (metadata "field" names it).
     *   INVALID_ARGUMENT BAD_EXPIRES_AT: expires_at is not a valid Timestamp.
     */
    offer: handleUnaryCall<OfferRequest, OfferResponse>;
}
export interface AllocationServiceClient extends Client {
    /**
     * Offer proposes a reservation to the scheduler. The scheduler answers ACCEPTED or
     * REJECTED, and may hold the call until it decides, but never past expires_at.
     *
     * Errors:
     *   INVALID_ARGUMENT MISSING_FIELD: a required field is empty (metadata "field" names it).
     *   INVALID_ARGUMENT BAD_EXPIRES_AT: expires_at is not a valid Timestamp.
     */
    offer(request: OfferRequest, callback: (error: ServiceError | null, response: OfferResponse) => void): ClientUnaryCall;
    offer(request: OfferRequest, metadata: Metadata, callback: (error: ServiceError | null, response: OfferResponse) => void): ClientUnaryCall;
    offer(request: OfferRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: OfferResponse) => void): ClientUnaryCall;
}
export declare const AllocationServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): AllocationServiceClient;
    service: typeof AllocationServiceService;
    serviceName: string;
};
/**
 * CoordinationService is served by schedulers for the jobs they dispatched: job bridges
 * report progress to it and data fetchers ask it which data slice to train on next.
 */
export type CoordinationServiceService = typeof CoordinationServiceService;
export declare const CoordinationServiceService: {
    /**
     * ReportProgress records one progress event of a job and returns what the job does next.
     *
     * Errors:
     *   INVALID_ARGUMENT MISSING_FIELD: job_id is empty.
     *   INVALID_ARGUMENT BAD_PROGRESS_KIND, BAD_BATCH: kind is not set, or a BATCH report has
     *     batch_size 0 (or batch_seconds is negative, NaN or infinite).
     *   NOT_FOUND UNKNOWN_JOB: the job is not a live training job of the run.
     *   PERMISSION_DENIED WRONG_WORKER: the job runs on another worker.
     *   FAILED_PRECONDITION STALE_ROUND: round is before the job's current round.
     */
    readonly reportProgress: {
        readonly path: "/tendril.scheduler.v1.CoordinationService/ReportProgress";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ReportProgressRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ReportProgressRequest;
        readonly responseSerialize: (value: ReportProgressResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ReportProgressResponse;
    };
    /**
     * AssignSlice returns the next data slice a job should train on.
     *
     * Errors:
     *   INVALID_ARGUMENT MISSING_FIELD: job_id is empty.
     *   NOT_FOUND UNKNOWN_JOB: the job is not a live training job of the run.
     *   PERMISSION_DENIED WRONG_WORKER: the job runs on another worker.
     *   UNAVAILABLE NO_DATASET: the scheduler has not read the data set manifest yet; retry.
     */
    readonly assignSlice: {
        readonly path: "/tendril.scheduler.v1.CoordinationService/AssignSlice";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: AssignSliceRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => AssignSliceRequest;
        readonly responseSerialize: (value: AssignSliceResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => AssignSliceResponse;
    };
};
export interface CoordinationServiceServer extends UntypedServiceImplementation {
    /**
     * ReportProgress records one progress event of a job and returns what the job does next.
     *
     * Errors:
     *   INVALID_ARGUMENT MISSING_FIELD: job_id is empty.
     *   INVALID_ARGUMENT BAD_PROGRESS_KIND, BAD_BATCH: kind is not set, or a BATCH report has
     *     batch_size 0 (or batch_seconds is negative, NaN or infinite).
     *   NOT_FOUND UNKNOWN_JOB: the job is not a live training job of the run.
     *   PERMISSION_DENIED WRONG_WORKER: the job runs on another worker.
     *   FAILED_PRECONDITION STALE_ROUND: round is before the job's current round.
     */
    reportProgress: handleUnaryCall<ReportProgressRequest, ReportProgressResponse>;
    /**
     * AssignSlice returns the next data slice a job should train on.
     *
     * Errors:
     *   INVALID_ARGUMENT MISSING_FIELD: job_id is empty.
     *   NOT_FOUND UNKNOWN_JOB: the job is not a live training job of the run.
     *   PERMISSION_DENIED WRONG_WORKER: the job runs on another worker.
     *   UNAVAILABLE NO_DATASET: the scheduler has not read the data set manifest yet; retry.
     */
    assignSlice: handleUnaryCall<AssignSliceRequest, AssignSliceResponse>;
}
export interface CoordinationServiceClient extends Client {
    /**
     * ReportProgress records one progress event of a job and returns what the job does next.
     *
     * Errors:
     *   INVALID_ARGUMENT MISSING_FIELD: job_id is empty.
     *   INVALID_ARGUMENT BAD_PROGRESS_KIND, BAD_BATCH: kind is not set, or a BATCH report has
     *     batch_size 0 (or batch_seconds is negative, NaN or infinite).
     *   NOT_FOUND UNKNOWN_JOB: the job is not a live training job of the run.
     *   PERMISSION_DENIED WRONG_WORKER: the job runs on another worker.
     *   FAILED_PRECONDITION STALE_ROUND: round is before the job's current round.
     */
    reportProgress(request: ReportProgressRequest, callback: (error: ServiceError | null, response: ReportProgressResponse) => void): ClientUnaryCall;
    reportProgress(request: ReportProgressRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ReportProgressResponse) => void): ClientUnaryCall;
    reportProgress(request: ReportProgressRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ReportProgressResponse) => void): ClientUnaryCall;
    /**
     * AssignSlice returns the next data slice a job should train on.
     *
     * Errors:
     *   INVALID_ARGUMENT MISSING_FIELD: job_id is empty.
     *   NOT_FOUND UNKNOWN_JOB: the job is not a live training job of the run.
     *   PERMISSION_DENIED WRONG_WORKER: the job runs on another worker.
     *   UNAVAILABLE NO_DATASET: the scheduler has not read the data set manifest yet; retry.
     */
    assignSlice(request: AssignSliceRequest, callback: (error: ServiceError | null, response: AssignSliceResponse) => void): ClientUnaryCall;
    assignSlice(request: AssignSliceRequest, metadata: Metadata, callback: (error: ServiceError | null, response: AssignSliceResponse) => void): ClientUnaryCall;
    assignSlice(request: AssignSliceRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: AssignSliceResponse) => void): ClientUnaryCall;
}
export declare const CoordinationServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): CoordinationServiceClient;
    service: typeof CoordinationServiceService;
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
