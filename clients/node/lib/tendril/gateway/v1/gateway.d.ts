import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type CallOptions, type ChannelCredentials, Client, type ClientOptions, type ClientReadableStream, type ClientUnaryCall, type handleServerStreamingCall, type handleUnaryCall, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { Any } from "../../../google/protobuf/any";
/** RecordEventType says what happened to a record. */
export declare enum RecordEventType {
    /** RECORD_EVENT_TYPE_UNSPECIFIED - Not set. */
    RECORD_EVENT_TYPE_UNSPECIFIED = 0,
    /** RECORD_EVENT_TYPE_EXISTING - The record exists (sent for every live record when a watch starts). */
    RECORD_EVENT_TYPE_EXISTING = 1,
    /** RECORD_EVENT_TYPE_PUT - The record was created or refreshed. */
    RECORD_EVENT_TYPE_PUT = 2,
    /** RECORD_EVENT_TYPE_DELETED - The record was deleted. */
    RECORD_EVENT_TYPE_DELETED = 3,
    /** RECORD_EVENT_TYPE_EXPIRED - The record's TTL ran out. */
    RECORD_EVENT_TYPE_EXPIRED = 4,
    UNRECOGNIZED = -1
}
export declare function recordEventTypeFromJSON(object: any): RecordEventType;
export declare function recordEventTypeToJSON(object: RecordEventType): string;
/** Envelope is one message on the bus. */
export interface Envelope {
    /** Topic it was published on, e.g. "tendril/worker". */
    topic: string;
    /** Id of the publishing peer. */
    sender: string;
    /** The message itself (e.g. a tendril.arbiter.v1.ResourceRequest). */
    payload: Any | undefined;
    /** When the gateway received it. */
    publishedAt: Date | undefined;
}
/** PublishRequest carries one message for a topic. */
export interface PublishRequest {
    /** Topic to publish on (non-empty). */
    topic: string;
    /** Id of the publishing peer. */
    sender: string;
    /** The message (required). */
    payload: Any | undefined;
}
/** PublishResponse tells how many subscribers the message reached. */
export interface PublishResponse {
    /**
     * Number of subscribers the message was queued for (with the redis backend: on every gateway
     * of the network, counted from what each gateway last reported).
     */
    delivered: number;
}
/** SubscribeRequest names the topic to follow. */
export interface SubscribeRequest {
    /** Topic to follow (non-empty). */
    topic: string;
    /** Id of the subscribing peer (for logs). */
    subscriber: string;
}
/** SubscribeResponse is one message of the subscribed topic. */
export interface SubscribeResponse {
    /** The message. */
    envelope: Envelope | undefined;
}
/** Record is one registry entry. */
export interface Record {
    /** Record kind, e.g. "worker" or "dataset". */
    kind: string;
    /** Id unique within its kind. */
    id: string;
    /** The record's content (e.g. a tendril.common.v1.WorkerRecord). */
    payload: Any | undefined;
    /** Time to live in seconds from the last Put. */
    ttlSeconds: number;
    /** When the record expires unless refreshed. */
    expiresAt: Date | undefined;
    /** Number of Puts since the record was created. */
    version: number;
    /**
     * Certificate name of the owner under mTLS; empty for a record owned through a secret. Set
     * by the gateway; ignored in a PutRequest.
     */
    owner: string;
    /**
     * sha256 of the owner's secret (records created without mTLS). Kept by the gateway's store
     * so any storage backend keeps the ownership with the record; never sent to callers and
     * ignored in a PutRequest.
     */
    ownerSecretSha256: Buffer;
}
/** PutRequest creates or refreshes a record. */
export interface PutRequest {
    /** The record; kind, id and a positive ttl_seconds are required. */
    record: Record | undefined;
    /**
     * The record's secret from the PutResponse that created it (without mTLS); empty when
     * creating a record or under mTLS.
     */
    secret: string;
}
/** PutResponse returns the stored record. */
export interface PutResponse {
    /** The record as stored, with expires_at and version. */
    record: Record | undefined;
    /**
     * Set only when this Put created the record without mTLS: the secret (256 random bits,
     * base64url) that later Puts and the Delete of this record must present. The gateway keeps
     * only its hash; keep it until the record expires or is deleted.
     */
    secret: string;
}
/** GetRequest names one record. */
export interface GetRequest {
    /** Record kind. */
    kind: string;
    /** Record id. */
    id: string;
}
/** GetResponse returns one record. */
export interface GetResponse {
    /** The record. */
    record: Record | undefined;
}
/** ListRequest names a kind and a page. */
export interface ListRequest {
    /** Record kind; empty lists every kind. */
    kind: string;
    /**
     * Most records in the page; 0 means the default (100). Larger values are lowered to the
     * gateway's maximum, which keeps a page under the message limit at the record size cap.
     */
    pageSize: number;
    /** next_page_token of the previous page; empty for the first page. */
    pageToken: string;
}
/** ListResponse returns one page of live records. */
export interface ListResponse {
    /** Live records, sorted by kind then id. */
    records: Record[];
    /**
     * Token of the next page; empty on the last page. It names the last record of this page, so
     * records put or removed meanwhile never make the next page skip or repeat another record.
     */
    nextPageToken: string;
}
/** DeleteRequest names one record. */
export interface DeleteRequest {
    /** Record kind. */
    kind: string;
    /** Record id. */
    id: string;
    /** The record's secret from the PutResponse that created it (without mTLS). */
    secret: string;
}
/** DeleteResponse is empty. */
export interface DeleteResponse {
}
/** WatchRequest names the kind to watch. */
export interface WatchRequest {
    /** Record kind; empty watches every kind. */
    kind: string;
}
/** WatchResponse is one change to a record. */
export interface WatchResponse {
    /** What happened. */
    type: RecordEventType;
    /** The record (its last content for DELETED and EXPIRED). */
    record: Record | undefined;
}
export declare const Envelope: MessageFns<Envelope>;
export declare const PublishRequest: MessageFns<PublishRequest>;
export declare const PublishResponse: MessageFns<PublishResponse>;
export declare const SubscribeRequest: MessageFns<SubscribeRequest>;
export declare const SubscribeResponse: MessageFns<SubscribeResponse>;
export declare const Record: MessageFns<Record>;
export declare const PutRequest: MessageFns<PutRequest>;
export declare const PutResponse: MessageFns<PutResponse>;
export declare const GetRequest: MessageFns<GetRequest>;
export declare const GetResponse: MessageFns<GetResponse>;
export declare const ListRequest: MessageFns<ListRequest>;
export declare const ListResponse: MessageFns<ListResponse>;
export declare const DeleteRequest: MessageFns<DeleteRequest>;
export declare const DeleteResponse: MessageFns<DeleteResponse>;
export declare const WatchRequest: MessageFns<WatchRequest>;
export declare const WatchResponse: MessageFns<WatchResponse>;
/**
 * BusService is the topic bus of a network: messages published on a topic reach every
 * current subscriber of that topic. Nothing is stored; a subscriber sees what is
 * published while it is subscribed.
 */
export type BusServiceService = typeof BusServiceService;
export declare const BusServiceService: {
    /**
     * Publish sends one message to every current subscriber of its topic. Each caller (its
     * certificate name under mTLS, else its tendril-peer-id metadata, else its address) may
     * publish at a bounded rate (a token bucket; the gateway's publish_rate and publish_burst).
     *
     * Errors:
     *   INVALID_ARGUMENT PAYLOAD_MISSING: the message has no payload.
     *   INVALID_ARGUMENT TOPIC_MISSING, TOPIC_TOO_LONG: the topic is empty or over 256 characters.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   RESOURCE_EXHAUSTED RATE_LIMITED: the caller published faster than its rate; the status
     *     carries a google.rpc.RetryInfo with the delay after which a Publish is let through.
     */
    readonly publish: {
        readonly path: "/tendril.gateway.v1.BusService/Publish";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: PublishRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PublishRequest;
        readonly responseSerialize: (value: PublishResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PublishResponse;
    };
    /**
     * Subscribe streams every message published on a topic from now on.
     *
     * Errors:
     *   INVALID_ARGUMENT TOPIC_MISSING, TOPIC_TOO_LONG: the topic is empty or over 256 characters.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; an
     *     open stream ends with it. The gateway reconnects by itself: retry, or use another gateway.
     */
    readonly subscribe: {
        readonly path: "/tendril.gateway.v1.BusService/Subscribe";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: SubscribeRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => SubscribeRequest;
        readonly responseSerialize: (value: SubscribeResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => SubscribeResponse;
    };
};
export interface BusServiceServer extends UntypedServiceImplementation {
    /**
     * Publish sends one message to every current subscriber of its topic. Each caller (its
     * certificate name under mTLS, else its tendril-peer-id metadata, else its address) may
     * publish at a bounded rate (a token bucket; the gateway's publish_rate and publish_burst).
     *
     * Errors:
     *   INVALID_ARGUMENT PAYLOAD_MISSING: the message has no payload.
     *   INVALID_ARGUMENT TOPIC_MISSING, TOPIC_TOO_LONG: the topic is empty or over 256 characters.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   RESOURCE_EXHAUSTED RATE_LIMITED: the caller published faster than its rate; the status
     *     carries a google.rpc.RetryInfo with the delay after which a Publish is let through.
     */
    publish: handleUnaryCall<PublishRequest, PublishResponse>;
    /**
     * Subscribe streams every message published on a topic from now on.
     *
     * Errors:
     *   INVALID_ARGUMENT TOPIC_MISSING, TOPIC_TOO_LONG: the topic is empty or over 256 characters.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; an
     *     open stream ends with it. The gateway reconnects by itself: retry, or use another gateway.
     */
    subscribe: handleServerStreamingCall<SubscribeRequest, SubscribeResponse>;
}
export interface BusServiceClient extends Client {
    /**
     * Publish sends one message to every current subscriber of its topic. Each caller (its
     * certificate name under mTLS, else its tendril-peer-id metadata, else its address) may
     * publish at a bounded rate (a token bucket; the gateway's publish_rate and publish_burst).
     *
     * Errors:
     *   INVALID_ARGUMENT PAYLOAD_MISSING: the message has no payload.
     *   INVALID_ARGUMENT TOPIC_MISSING, TOPIC_TOO_LONG: the topic is empty or over 256 characters.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   RESOURCE_EXHAUSTED RATE_LIMITED: the caller published faster than its rate; the status
     *     carries a google.rpc.RetryInfo with the delay after which a Publish is let through.
     */
    publish(request: PublishRequest, callback: (error: ServiceError | null, response: PublishResponse) => void): ClientUnaryCall;
    publish(request: PublishRequest, metadata: Metadata, callback: (error: ServiceError | null, response: PublishResponse) => void): ClientUnaryCall;
    publish(request: PublishRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: PublishResponse) => void): ClientUnaryCall;
    /**
     * Subscribe streams every message published on a topic from now on.
     *
     * Errors:
     *   INVALID_ARGUMENT TOPIC_MISSING, TOPIC_TOO_LONG: the topic is empty or over 256 characters.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; an
     *     open stream ends with it. The gateway reconnects by itself: retry, or use another gateway.
     */
    subscribe(request: SubscribeRequest, options?: Partial<CallOptions>): ClientReadableStream<SubscribeResponse>;
    subscribe(request: SubscribeRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<SubscribeResponse>;
}
export declare const BusServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): BusServiceClient;
    service: typeof BusServiceService;
    serviceName: string;
};
/**
 * RegistryService keeps records (workers, data sets, ...) that vanish unless refreshed
 * before their TTL runs out.
 *
 * Limits: a record is at most the gateway's max_record_bytes (default 65536) serialized; List
 * answers in pages that never exceed the 8 MiB message limit; Put is rate limited per caller
 * like Publish.
 *
 * Ownership: only the owner of a live record may rewrite or delete it. Under mTLS the owner is
 * the name on the certificate of the caller that created the record. Without mTLS the Put that
 * creates a record returns a secret (PutResponse.secret); later Puts and the Delete of that
 * record must present it. A record whose TTL ran out (or that was deleted) may be created anew
 * by anyone, who becomes its owner.
 */
export type RegistryServiceService = typeof RegistryServiceService;
export declare const RegistryServiceService: {
    /**
     * Put creates or refreshes a record.
     *
     * Errors:
     *   INVALID_ARGUMENT KIND_MISSING, KIND_TOO_LONG, ID_MISSING, ID_TOO_LONG: kind or id is empty or
     *     over 256 characters.
     *   INVALID_ARGUMENT TTL_INVALID: ttl_seconds is not in (0, 86400].
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   INVALID_ARGUMENT RECORD_TOO_LARGE: the record is over the gateway's max_record_bytes
     *     serialized (ErrorInfo metadata "size" and "limit").
     *   PERMISSION_DENIED RECORD_NOT_OWNED: the live record belongs to another caller (another
     *     certificate, or the request lacks the record's secret).
     *   RESOURCE_EXHAUSTED RATE_LIMITED: the caller put faster than its rate; the status carries a
     *     google.rpc.RetryInfo with the delay after which a Put is let through.
     */
    readonly put: {
        readonly path: "/tendril.gateway.v1.RegistryService/Put";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: PutRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => PutRequest;
        readonly responseSerialize: (value: PutResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => PutResponse;
    };
    /**
     * Get returns one live record.
     *
     * Errors:
     *   INVALID_ARGUMENT KIND_MISSING, KIND_TOO_LONG, ID_MISSING, ID_TOO_LONG: kind or id is empty or
     *     over 256 characters.
     *   NOT_FOUND RECORD_NOT_FOUND: no live record of that kind and id.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     */
    readonly get: {
        readonly path: "/tendril.gateway.v1.RegistryService/Get";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: GetRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => GetRequest;
        readonly responseSerialize: (value: GetResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => GetResponse;
    };
    /**
     * List returns the live records of a kind, one page at a time, ordered by (kind, id).
     *
     * Errors:
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   INVALID_ARGUMENT PAGE_TOKEN_INVALID: page_token is not a next_page_token given for the same
     *     kind (any gateway of the network continues a List another began).
     */
    readonly list: {
        readonly path: "/tendril.gateway.v1.RegistryService/List";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: ListRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => ListRequest;
        readonly responseSerialize: (value: ListResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => ListResponse;
    };
    /**
     * Delete removes a record at once; only its owner may.
     *
     * Errors:
     *   INVALID_ARGUMENT KIND_MISSING, KIND_TOO_LONG, ID_MISSING, ID_TOO_LONG: kind or id is empty or
     *     over 256 characters.
     *   NOT_FOUND RECORD_NOT_FOUND: no live record of that kind and id.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   PERMISSION_DENIED RECORD_NOT_OWNED: the record belongs to another caller.
     */
    readonly delete: {
        readonly path: "/tendril.gateway.v1.RegistryService/Delete";
        readonly requestStream: false;
        readonly responseStream: false;
        readonly requestSerialize: (value: DeleteRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => DeleteRequest;
        readonly responseSerialize: (value: DeleteResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => DeleteResponse;
    };
    /**
     * Watch streams the current records of a kind, then every change to them. Each message
     * holds one record, so no message exceeds the message limit.
     *
     * Errors:
     *   ABORTED WATCH_OVERFLOW: the watcher fell 1024 events behind; watch again.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; an
     *     open stream ends with it. The gateway reconnects by itself: retry, or use another gateway.
     */
    readonly watch: {
        readonly path: "/tendril.gateway.v1.RegistryService/Watch";
        readonly requestStream: false;
        readonly responseStream: true;
        readonly requestSerialize: (value: WatchRequest) => Buffer;
        readonly requestDeserialize: (value: Buffer) => WatchRequest;
        readonly responseSerialize: (value: WatchResponse) => Buffer;
        readonly responseDeserialize: (value: Buffer) => WatchResponse;
    };
};
export interface RegistryServiceServer extends UntypedServiceImplementation {
    /**
     * Put creates or refreshes a record.
     *
     * Errors:
     *   INVALID_ARGUMENT KIND_MISSING, KIND_TOO_LONG, ID_MISSING, ID_TOO_LONG: kind or id is empty or
     *     over 256 characters.
     *   INVALID_ARGUMENT TTL_INVALID: ttl_seconds is not in (0, 86400].
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   INVALID_ARGUMENT RECORD_TOO_LARGE: the record is over the gateway's max_record_bytes
     *     serialized (ErrorInfo metadata "size" and "limit").
     *   PERMISSION_DENIED RECORD_NOT_OWNED: the live record belongs to another caller (another
     *     certificate, or the request lacks the record's secret).
     *   RESOURCE_EXHAUSTED RATE_LIMITED: the caller put faster than its rate; the status carries a
     *     google.rpc.RetryInfo with the delay after which a Put is let through.
     */
    put: handleUnaryCall<PutRequest, PutResponse>;
    /**
     * Get returns one live record.
     *
     * Errors:
     *   INVALID_ARGUMENT KIND_MISSING, KIND_TOO_LONG, ID_MISSING, ID_TOO_LONG: kind or id is empty or
     *     over 256 characters.
     *   NOT_FOUND RECORD_NOT_FOUND: no live record of that kind and id.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     */
    get: handleUnaryCall<GetRequest, GetResponse>;
    /**
     * List returns the live records of a kind, one page at a time, ordered by (kind, id).
     *
     * Errors:
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   INVALID_ARGUMENT PAGE_TOKEN_INVALID: page_token is not a next_page_token given for the same
     *     kind (any gateway of the network continues a List another began).
     */
    list: handleUnaryCall<ListRequest, ListResponse>;
    /**
     * Delete removes a record at once; only its owner may.
     *
     * Errors:
     *   INVALID_ARGUMENT KIND_MISSING, KIND_TOO_LONG, ID_MISSING, ID_TOO_LONG: kind or id is empty or
     *     over 256 characters.
     *   NOT_FOUND RECORD_NOT_FOUND: no live record of that kind and id.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   PERMISSION_DENIED RECORD_NOT_OWNED: the record belongs to another caller.
     */
    delete: handleUnaryCall<DeleteRequest, DeleteResponse>;
    /**
     * Watch streams the current records of a kind, then every change to them. Each message
     * holds one record, so no message exceeds the message limit.
     *
     * Errors:
     *   ABORTED WATCH_OVERFLOW: the watcher fell 1024 events behind; watch again.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; an
     *     open stream ends with it. The gateway reconnects by itself: retry, or use another gateway.
     */
    watch: handleServerStreamingCall<WatchRequest, WatchResponse>;
}
export interface RegistryServiceClient extends Client {
    /**
     * Put creates or refreshes a record.
     *
     * Errors:
     *   INVALID_ARGUMENT KIND_MISSING, KIND_TOO_LONG, ID_MISSING, ID_TOO_LONG: kind or id is empty or
     *     over 256 characters.
     *   INVALID_ARGUMENT TTL_INVALID: ttl_seconds is not in (0, 86400].
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   INVALID_ARGUMENT RECORD_TOO_LARGE: the record is over the gateway's max_record_bytes
     *     serialized (ErrorInfo metadata "size" and "limit").
     *   PERMISSION_DENIED RECORD_NOT_OWNED: the live record belongs to another caller (another
     *     certificate, or the request lacks the record's secret).
     *   RESOURCE_EXHAUSTED RATE_LIMITED: the caller put faster than its rate; the status carries a
     *     google.rpc.RetryInfo with the delay after which a Put is let through.
     */
    put(request: PutRequest, callback: (error: ServiceError | null, response: PutResponse) => void): ClientUnaryCall;
    put(request: PutRequest, metadata: Metadata, callback: (error: ServiceError | null, response: PutResponse) => void): ClientUnaryCall;
    put(request: PutRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: PutResponse) => void): ClientUnaryCall;
    /**
     * Get returns one live record.
     *
     * Errors:
     *   INVALID_ARGUMENT KIND_MISSING, KIND_TOO_LONG, ID_MISSING, ID_TOO_LONG: kind or id is empty or
     *     over 256 characters.
     *   NOT_FOUND RECORD_NOT_FOUND: no live record of that kind and id.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     */
    get(request: GetRequest, callback: (error: ServiceError | null, response: GetResponse) => void): ClientUnaryCall;
    get(request: GetRequest, metadata: Metadata, callback: (error: ServiceError | null, response: GetResponse) => void): ClientUnaryCall;
    get(request: GetRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: GetResponse) => void): ClientUnaryCall;
    /**
     * List returns the live records of a kind, one page at a time, ordered by (kind, id).
     *
     * Errors:
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   INVALID_ARGUMENT PAGE_TOKEN_INVALID: page_token is not a next_page_token given for the same
     *     kind (any gateway of the network continues a List another began).
     */
    list(request: ListRequest, callback: (error: ServiceError | null, response: ListResponse) => void): ClientUnaryCall;
    list(request: ListRequest, metadata: Metadata, callback: (error: ServiceError | null, response: ListResponse) => void): ClientUnaryCall;
    list(request: ListRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: ListResponse) => void): ClientUnaryCall;
    /**
     * Delete removes a record at once; only its owner may.
     *
     * Errors:
     *   INVALID_ARGUMENT KIND_MISSING, KIND_TOO_LONG, ID_MISSING, ID_TOO_LONG: kind or id is empty or
     *     over 256 characters.
     *   NOT_FOUND RECORD_NOT_FOUND: no live record of that kind and id.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; the
     *     gateway reconnects by itself: retry, or use another gateway.
     *   PERMISSION_DENIED RECORD_NOT_OWNED: the record belongs to another caller.
     */
    delete(request: DeleteRequest, callback: (error: ServiceError | null, response: DeleteResponse) => void): ClientUnaryCall;
    delete(request: DeleteRequest, metadata: Metadata, callback: (error: ServiceError | null, response: DeleteResponse) => void): ClientUnaryCall;
    delete(request: DeleteRequest, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: DeleteResponse) => void): ClientUnaryCall;
    /**
     * Watch streams the current records of a kind, then every change to them. Each message
     * holds one record, so no message exceeds the message limit.
     *
     * Errors:
     *   ABORTED WATCH_OVERFLOW: the watcher fell 1024 events behind; watch again.
     *   UNAVAILABLE BACKEND_UNAVAILABLE: the gateway's Redis (backend redis) cannot be reached; an
     *     open stream ends with it. The gateway reconnects by itself: retry, or use another gateway.
     */
    watch(request: WatchRequest, options?: Partial<CallOptions>): ClientReadableStream<WatchResponse>;
    watch(request: WatchRequest, metadata?: Metadata, options?: Partial<CallOptions>): ClientReadableStream<WatchResponse>;
}
export declare const RegistryServiceClient: {
    new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): RegistryServiceClient;
    service: typeof RegistryServiceService;
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
