// Typed gRPC-Web clients for the four services, generated from protos/ (web/gen), talking to
// the gateway this page was served from. The caller's token rides in the authorization header;
// the gateway verifies it and tells the services who is calling.

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { ErrorInfoSchema } from "../gen/google/rpc/error_details_pb";
import { BookingService } from "../gen/ticketing/booking/v1/booking_pb";
import type { ErrorReason } from "../gen/ticketing/common/v1/common_pb";
import { CatalogService } from "../gen/ticketing/catalog/v1/catalog_pb";
import { QueueService } from "../gen/ticketing/queue/v1/queue_pb";
import { SearchService } from "../gen/ticketing/search/v1/search_pb";
import * as session from "./session";

const withToken: Interceptor = (next) => async (request) => {
  const current = session.current();
  if (current) request.header.set("authorization", `Bearer ${current.token}`);
  return next(request);
};

const transport = createGrpcWebTransport({
  baseUrl: window.location.origin,
  interceptors: [withToken],
});

export const catalog = createClient(CatalogService, transport);
export const search = createClient(SearchService, transport);
export const booking = createClient(BookingService, transport);
export const queue = createClient(QueueService, transport);

// An ErrorInfo reason as sent: the name of a ticketing.common.v1.ErrorReason value without
// its prefix. Typing the table by the generated enum makes the compiler refuse a reason the
// contract does not define.
type Reason = Exclude<keyof typeof ErrorReason, "UNSPECIFIED">;

// What a person should read for each ErrorInfo reason (services: ticketing.dev; the gateway's
// own refusals arrive as plain gRPC statuses and are described by their code below).
const REASONS: Partial<Record<Reason, string>> = {
  TICKET_UNAVAILABLE: "Someone else got one of those seats first. Pick another.",
  HOLD_EXPIRED: "Your hold ran out before payment. Reserve the seats again.",
  NOT_HOLDER: "Those seats are held by someone else.",
  LIMIT_EXCEEDED: "That is more tickets than one buyer may have for this event.",
  PAYMENT_DECLINED: "The card was declined. Your seats are still held: try another card.",
  PAYMENT_REFUNDED: "The payment was refunded because the seats could not be booked.",
  NO_ADJACENT_SEATS: "Not that many seats together are left. Try fewer seats.",
  NOT_ADMITTED: "This sale uses a waiting queue: join it and wait for your turn first.",
  QUEUE_NOT_ENABLED: "This event has no waiting queue.",
  NOT_IN_QUEUE: "You are not in this event's queue (any more).",
  MALFORMED_REQUEST: "The request could not be read: check what was typed and try again.",
  SALE_NOT_OPEN: "The sale has not opened yet.",
  SALE_CLOSED: "The sale is closed.",
  EVENT_NOT_FOUND: "There is no such event.",
  AUTHENTICATION_REQUIRED: "Please sign in first.",
};

const CODES: Partial<Record<Code, string>> = {
  [Code.Unauthenticated]: "Please sign in (or sign in again: your token may have expired).",
  [Code.PermissionDenied]: "You are not allowed to do that.",
  [Code.ResourceExhausted]: "Too many requests: wait a moment and try again.",
  [Code.Unavailable]: "The service is unavailable right now. Try again in a moment.",
  [Code.DeadlineExceeded]: "The service took too long to answer. Try again.",
};

export interface Problem {
  code: Code;
  reason: string;
  text: string;
  // The ErrorInfo's metadata (for example NO_ADJACENT_SEATS' seats_remaining).
  metadata: Record<string, string>;
}

export function problem(err: unknown): Problem {
  const error = ConnectError.from(err);
  const info = error.findDetails(ErrorInfoSchema)[0];
  const reason = info?.reason ?? Code[error.code];
  const text = (info && REASONS[info.reason as Reason]) ?? CODES[error.code] ?? error.rawMessage;
  return { code: error.code, reason, text, metadata: { ...(info?.metadata ?? {}) } };
}

export function isAborted(err: unknown): boolean {
  return ConnectError.from(err).code === Code.Canceled;
}
