import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientUnaryCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { ExecutorRef, PeerRef, Resources } from "../../common/v1/common";
/** OfferState is the outcome of one request at this worker. */
export declare enum OfferState {
    /** OFFER_STATE_UNSPECIFIED - Not set. */
    OFFER_STATE_UNSPECIFIED = 0,
    /** OFFER_STATE_PENDING - Offer sent, no answer yet. */
    OFFER_STATE_PENDING = 1,
    /** OFFER_STATE_ACCEPTED - The scheduler accepted: the lease is renewable. */
    OFFER_STATE_ACCEPTED = 2,
    /** OFFER_STATE_REJECTED - The scheduler rejected: the reservation was freed. */
    OFFER_STATE_REJECTED = 3,
    /** OFFER_STATE_TIMED_OUT - The scheduler did not answer in time: the reservation was freed. */
    OFFER_STATE_TIMED_OUT = 4,
    /** OFFER_STATE_FAILED - Calling the scheduler failed: the reservation was freed. */
    OFFER_STATE_FAILED = 5,
    /** OFFER_STATE_DROPPED - The request was dropped before any offer (see reason). */
    OFFER_STATE_DROPPED = 6,
    UNRECOGNIZED = -1
}
export declare function offerStateFromJSON(object: any): OfferState;
export declare function offerStateToJSON(object: OfferState): string;
/** ResourceRequest is what a scheduler publishes on topic "tendril/worker". */
export interface ResourceRequest {
    /** Id chosen by the scheduler, unique per request. */
    requestId: string;
    /** The scheduler: its id and the address of its AllocationService. */
    scheduler: PeerRef | undefined;
    /** Resources wanted. */
    resources: Resources | undefined;
    /** Executors the work needs; the worker must have at least one of them. */
    executors: ExecutorRef[];
    /** Price the scheduler bids per unit of score. */
    bid: number;
    /** After this instant the request is void and is dropped unread. */
    deadline: Date | undefined;
}
/** Offer is the record of one request's handling. */
export interface Offer {
    /** Offer id (empty when the request was dropped). */
    offerId: string;
    /** The request's id. */
    requestId: string;
    /** The requesting scheduler's id. */
    schedulerId: string;
    /** The temporary lease reserved for the offer (empty when dropped). */
    leaseId: string;
    /** What was offered. */
    resources: Resources | undefined;
    /** Price asked. */
    price: number;
    /** Score of the request (bid per weighted resource unit). */
    score: number;
    /** Outcome. */
    state: OfferState;
    /** Why it was dropped, rejected or failed. */
    reason: string;
    /** When the arbiter handled the request. */
    createdAt: Date | undefined;
    /** When the outcome was known. */
    decidedAt: Date | undefined;
}
/** SolicitRequest carries one direct request. */
export interface SolicitRequest {
    /** The request (request_id, scheduler, executors, a future deadline required). */
    request: ResourceRequest | undefined;
}
/** SolicitResponse tells what became of the request. */
export interface SolicitResponse {
    /** The outcome; state ACCEPTED carries the lease id. */
    offer: Offer | undefined;
}
/** ListOffersRequest limits the listing. */
export interface ListOffersRequest {
    /** Most entries to return; 0 means 100. */
    limit: number;
}
/** ListOffersResponse lists recent outcomes. */
export interface ListOffersResponse {
    /** Newest first. */
    offers: Offer[];
}
export declare const ResourceRequest: MessageFns<ResourceRequest>;
export declare const Offer: MessageFns<Offer>;
export declare const SolicitRequest: MessageFns<SolicitRequest>;
export declare const SolicitResponse: MessageFns<SolicitResponse>;
export declare const ListOffersRequest: MessageFns<ListOffersRequest>;
export declare const ListOffersResponse: MessageFns<ListOffersResponse>;
/**
 * ArbiterService reads resource requests from the network, filters and scores them, and
 * offers this worker's resources to the schedulers whose requests win.
 */
export type ArbiterServiceService = typeof ArbiterServiceService;
export declare const ArbiterServiceService: {
    /**
     * Solicit hands the arbiter one request directly (instead of through the bus) and waits
     * until it has been decided: dropped, or offered and answered.
     *
     * Errors:
     *   INVALID_ARGUMENT REQUEST_MISSING: request is not set.
     *   INVALID_ARGUMENT REQUEST_INVALID: the request breaks a rule (the message lists each one).
     *   PERMISSION_DENIED NOT_THE_SCHEDULER: the caller's peer id is not the request's scheduler id.
     *   UNAVAILABLE ARBITER_STOPPING: the arbiter is stopping; try another worker.
     */
    readonly solicit: {
        readonly path: "/tendril.arbiter.v1.ArbiterService/Solicit";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: SolicitRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SolicitRequest;
        readonly responseSerialize: (value: SolicitResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SolicitResponse;
    };
    /**
     * ListOffers shows recent offers and dropped requests, newest first.
     *
     * Errors: none of its own.
     */
    readonly listOffers: {
        readonly path: "/tendril.arbiter.v1.ArbiterService/ListOffers";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListOffersRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListOffersRequest;
        readonly responseSerialize: (value: ListOffersResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListOffersResponse;
    };
};
export interface ArbiterServiceServer extends UntypedServiceImplementation {
    /**
     * Solicit hands the arbiter one request directly (instead of through the bus) and waits
     * until it has been decided: dropped, or offered and answered.
     *
     * Errors:
     *   INVALID_ARGUMENT REQUEST_MISSING: request is not set.
     *   INVALID_ARGUMENT REQUEST_INVALID: the request breaks a rule (the message lists each one).
     *   PERMISSION_DENIED NOT_THE_SCHEDULER: the caller's peer id is not the request's scheduler id.
     *   UNAVAILABLE ARBITER_STOPPING: the arbiter is stopping; try another worker.
     */
    solicit: handleUnaryCall<SolicitRequest, SolicitResponse>;
    /**
     * ListOffers shows recent offers and dropped requests, newest first.
     *
     * Errors: none of its own.
     */
    listOffers: handleUnaryCall<ListOffersRequest, ListOffersResponse>;
}
export interface ArbiterServiceClient extends Client {
    /**
     * Solicit hands the arbiter one request directly (instead of through the bus) and waits
     * until it has been decided: dropped, or offered and answered.
     *
     * Errors:
     *   INVALID_ARGUMENT REQUEST_MISSING: request is not set.
     *   INVALID_ARGUMENT REQUEST_INVALID: the request breaks a rule (the message lists each one).
     *   PERMISSION_DENIED NOT_THE_SCHEDULER: the caller's peer id is not the request's scheduler id.
     *   UNAVAILABLE ARBITER_STOPPING: the arbiter is stopping; try another worker.
     */
    solicit(request: SolicitRequest, callback: (error: ServiceError | null, response: SolicitResponse) => void): ClientUnaryCall;
    solicit(request: SolicitRequest, metadata: Metadata, callback: (error: ServiceError | null, response: SolicitResponse) => void): ClientUnaryCall;
    solicit(request: SolicitRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: SolicitResponse) => void): ClientUnaryCall;
    /**
     * ListOffers shows recent offers and dropped requests, newest first.
     *
     * Errors: none of its own.
     */
    listOffers(request: ListOffersRequest, callback: (error: ServiceError | null, response: ListOffersResponse) => void): ClientUnaryCall;
    listOffers(request: ListOffersRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListOffersResponse) => void): ClientUnaryCall;
    listOffers(request: ListOffersRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListOffersResponse) => void): ClientUnaryCall;
}
export declare const ArbiterServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): ArbiterServiceClient;
    service: typeof ArbiterServiceService;
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
