import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientReadableStream, type handleServerStreamingCall, type Metadata, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { JobState, ResultsManifest } from "../../job/v1/job";
/** SubmitRequest carries the job description. */
export interface SubmitRequest {
    /**
     * The job.toml document (docs/JOBS.md lists every key). Its `id`, network.gateway,
     * network.listen and network.advertise_address are replaced by the service's own; the rest of
     * [network] (topic, timings) applies.
     */
    jobToml: string;
}
/** OfferTaken: a worker's offer was accepted. */
export interface OfferTaken {
    /** Worker id. */
    workerId: string;
    /** The lease now held. */
    leaseId: string;
    /** Offers seen in the choosing window (the taken one included). */
    offers: number;
}
/** Dispatched: the job started on the worker. */
export interface Dispatched {
    /** Job id (a new one for every attempt). */
    jobId: string;
    /** Worker id. */
    workerId: string;
    /** 0 for the first attempt, 1 for the first retry, ... */
    attempt: number;
}
/** Progress: the figures the executor reported last. */
export interface Progress {
    /** Job id. */
    jobId: string;
    /** The job's progress map. */
    values: {
        [key: string]: number;
    };
}
export interface Progress_ValuesEntry {
    key: string;
    value: number;
}
/** LogText: a piece of the executor's output. */
export interface LogText {
    /** Job id. */
    jobId: string;
    /** Text (UTF-8). */
    text: string;
}
/** Retry: the job's worker disappeared; the job runs again elsewhere. */
export interface Retry {
    /** The lost attempt's job id. */
    jobId: string;
    /** The lost worker. */
    workerId: string;
    /** Why it counts as lost. */
    reason: string;
    /** The attempt that starts now (1 for the first retry). */
    attempt: number;
}
/** ResultsFetched: the results are in the local folder, every file checked. */
export interface ResultsFetched {
    /** The local folder holding them. */
    path: string;
    /** The worker's manifest. */
    manifest: ResultsManifest | undefined;
}
/** Done: the job ended and, when it left results, they were fetched. */
export interface Done {
    /** Job id of the attempt that ended. */
    jobId: string;
    /** Worker it ran on. */
    workerId: string;
    /** Its end state. */
    state: JobState;
    /** Executor exit code. */
    exitCode: number;
    /** Why it ended so. */
    reason: string;
    /** The local results folder ("" when the job left none). */
    resultsPath: string;
    /** The worker's manifest of the results (unset when none). */
    manifest: ResultsManifest | undefined;
}
/** SubmitResponse is one event of a submission: one step of it. */
export interface SubmitResponse {
    /** When it happened. */
    at: Date | undefined;
    /** An offer was taken. */
    offerTaken?: OfferTaken | undefined;
    /** The job was dispatched. */
    dispatched?: Dispatched | undefined;
    /** New progress figures. */
    progress?: Progress | undefined;
    /** Executor output. */
    log?: LogText | undefined;
    /** The worker disappeared; retrying. */
    retry?: Retry | undefined;
    /** Results fetched. */
    resultsFetched?: ResultsFetched | undefined;
    /** The end. */
    done?: Done | undefined;
}
export declare const SubmitRequest: MessageFns<SubmitRequest>;
export declare const OfferTaken: MessageFns<OfferTaken>;
export declare const Dispatched: MessageFns<Dispatched>;
export declare const Progress: MessageFns<Progress>;
export declare const Progress_ValuesEntry: MessageFns<Progress_ValuesEntry>;
export declare const LogText: MessageFns<LogText>;
export declare const Retry: MessageFns<Retry>;
export declare const ResultsFetched: MessageFns<ResultsFetched>;
export declare const Done: MessageFns<Done>;
export declare const SubmitResponse: MessageFns<SubmitResponse>;
/**
 * SubmitService runs one job on the network for its caller: it advertises the job's resource
 * request on the gateway bus, takes the best offer, holds and renews the lease, dispatches the
 * job, follows its progress and log, fetches its results into a folder the service owns
 * (sha256-checked against the worker's manifest) and releases the lease. When the job's worker
 * disappears it retries on another worker up to the job's `retries` times; the results arrive
 * once. Served by `tendril jobs serve`; `tendril jobs submit` runs the same in-process.
 */
export type SubmitServiceService = typeof SubmitServiceService;
export declare const SubmitServiceService: {
    /**
     * Submit runs the job described by a job.toml document and streams what happens, ending with
     * a `done` event. A job that ends FAILED or CANCELLED is a `done` event too (with its state);
     * an error ends the stream only when the job could not run to an end. A caller that cancels
     * the call cancels the job and releases its lease.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_FILE: job_toml is not TOML or breaks the job.toml schema (the
     *     message names the key).
     *   DEADLINE_EXCEEDED NO_OFFER: no worker offered within the job's allocation timeout.
     *   UNAVAILABLE RETRIES_EXHAUSTED: the job's worker disappeared more often than `retries`
     *     allows.
     *   FAILED_PRECONDITION DISPATCH_REFUSED: a worker refused the dispatch for a reason another
     *     worker would give too (its reason and message are passed on in metadata).
     *   UNAVAILABLE RESULTS_FETCH_FAILED: the job ended but its results could not be fetched
     *     (the worker's answer in the message).
     *   DATA_LOSS RESULTS_CORRUPT: a fetched file's sha256 differs from the manifest's, twice.
     */
    readonly submit: {
        readonly path: "/tendril.submit.v1.SubmitService/Submit";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: SubmitRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SubmitRequest;
        readonly responseSerialize: (value: SubmitResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SubmitResponse;
    };
};
export interface SubmitServiceServer extends UntypedServiceImplementation {
    /**
     * Submit runs the job described by a job.toml document and streams what happens, ending with
     * a `done` event. A job that ends FAILED or CANCELLED is a `done` event too (with its state);
     * an error ends the stream only when the job could not run to an end. A caller that cancels
     * the call cancels the job and releases its lease.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_FILE: job_toml is not TOML or breaks the job.toml schema (the
     *     message names the key).
     *   DEADLINE_EXCEEDED NO_OFFER: no worker offered within the job's allocation timeout.
     *   UNAVAILABLE RETRIES_EXHAUSTED: the job's worker disappeared more often than `retries`
     *     allows.
     *   FAILED_PRECONDITION DISPATCH_REFUSED: a worker refused the dispatch for a reason another
     *     worker would give too (its reason and message are passed on in metadata).
     *   UNAVAILABLE RESULTS_FETCH_FAILED: the job ended but its results could not be fetched
     *     (the worker's answer in the message).
     *   DATA_LOSS RESULTS_CORRUPT: a fetched file's sha256 differs from the manifest's, twice.
     */
    submit: handleServerStreamingCall<SubmitRequest, SubmitResponse>;
}
export interface SubmitServiceClient extends Client {
    /**
     * Submit runs the job described by a job.toml document and streams what happens, ending with
     * a `done` event. A job that ends FAILED or CANCELLED is a `done` event too (with its state);
     * an error ends the stream only when the job could not run to an end. A caller that cancels
     * the call cancels the job and releases its lease.
     *
     * Errors:
     *   INVALID_ARGUMENT BAD_JOB_FILE: job_toml is not TOML or breaks the job.toml schema (the
     *     message names the key).
     *   DEADLINE_EXCEEDED NO_OFFER: no worker offered within the job's allocation timeout.
     *   UNAVAILABLE RETRIES_EXHAUSTED: the job's worker disappeared more often than `retries`
     *     allows.
     *   FAILED_PRECONDITION DISPATCH_REFUSED: a worker refused the dispatch for a reason another
     *     worker would give too (its reason and message are passed on in metadata).
     *   UNAVAILABLE RESULTS_FETCH_FAILED: the job ended but its results could not be fetched
     *     (the worker's answer in the message).
     *   DATA_LOSS RESULTS_CORRUPT: a fetched file's sha256 differs from the manifest's, twice.
     */
    submit(request: SubmitRequest, options?: Partial<CallOptions>): ClientReadableStream<SubmitResponse>;
    submit(request: SubmitRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<SubmitResponse>;
}
export declare const SubmitServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): SubmitServiceClient;
    service: typeof SubmitServiceService;
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
