// What outlives one view: the seats on hold while the buyer pays, and the waiting-queue
// admissions (a signed pass per event that reserving requires).

import type { Reservation } from "../gen/ticketing/booking/v1/booking_pb";

export interface Hold {
  reservation: Reservation;
  eventName: string;
  // Ticket id -> "Section · Row · Seat", as the buyer picked them.
  labels: Record<string, string>;
}

export interface Pass {
  token: string;
  expires: Date;
}

let hold: Hold | null = null;
const passes = new Map<string, Pass>();

export function currentHold(): Hold | null {
  return hold;
}

export function setHold(value: Hold | null): void {
  hold = value;
}

export function admission(eventId: string): Pass | null {
  const pass = passes.get(eventId);
  if (pass && pass.expires.getTime() > Date.now()) return pass;
  passes.delete(eventId);
  return null;
}

export function admit(eventId: string, pass: Pass): void {
  passes.set(eventId, pass);
}
