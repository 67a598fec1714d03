// How values read on the page.

import { timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";

import { EventType } from "../gen/ticketing/catalog/v1/catalog_pb";
import type { Money } from "../gen/ticketing/common/v1/common_pb";

const MINOR_DIGITS: Record<string, number> = { JPY: 0, KRW: 0 };

export function money(value: Pick<Money, "currencyCode" | "amountMinor"> | undefined): string {
  if (!value || !value.currencyCode) return "";
  const digits = MINOR_DIGITS[value.currencyCode] ?? 2;
  const amount = Number(value.amountMinor) / 10 ** digits;
  return new Intl.NumberFormat("en-GB", { style: "currency", currency: value.currencyCode }).format(
    amount,
  );
}

export function when(value: Timestamp | undefined): string {
  if (!value) return "";
  return new Intl.DateTimeFormat("en-GB", {
    weekday: "short",
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  }).format(timestampDate(value));
}

export function wait(value: Duration | undefined): string {
  const seconds = value ? Number(value.seconds) : 0;
  if (seconds < 60) return `${Math.max(seconds, 0)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} days`;
}

export function countdown(until: Date): string {
  const left = Math.max(0, Math.floor((until.getTime() - Date.now()) / 1000));
  return `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
}

export function eventType(value: EventType): string {
  const name = EventType[value] ?? "UNSPECIFIED";
  return name === "UNSPECIFIED" ? "" : name.charAt(0) + name.slice(1).toLowerCase();
}

// The search API takes the type in lower case.
export const EVENT_TYPES = Object.entries(EventType)
  .filter(([name, value]) => typeof value === "number" && name !== "UNSPECIFIED")
  .map(([name]) => name.toLowerCase());
