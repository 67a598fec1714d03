// The stack's Prometheus, read through the gateway's operator-only route
// (GET /operator/metrics/api/v1/query and .../query_range; deploy/stack/envoy_config.py): the
// caller's token rides in the authorization header, and the gateway answers 401 without one
// and 403 when its role is not operator.

import * as session from "./session";

const BASE = "/operator/metrics/api/v1";

// One series of a query's answer: its labels and [unix seconds, value] samples.
export interface Series {
  metric: Record<string, string>;
  values: [number, number][];
}

// The gateway or Prometheus refused the query; status is the HTTP status (0: no answer).
export class QueryError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface Answer {
  status: "success" | "error";
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] }[] };
  // The gateway's own refusals (JSON like the services' errors).
  message?: string;
}

async function get(path: string, params: Record<string, string>): Promise<Answer["data"]> {
  const headers: Record<string, string> = {};
  const current = session.current();
  if (current) headers.authorization = `Bearer ${current.token}`;
  let response: Response;
  try {
    response = await fetch(`${BASE}/${path}?${new URLSearchParams(params)}`, { headers });
  } catch (err) {
    throw new QueryError(0, `the gateway did not answer: ${(err as Error).message}`);
  }
  const body = (await response.json().catch(() => ({}))) as Answer;
  if (response.status === 401) {
    throw new QueryError(401, "Sign in as an operator to see the sale's figures.");
  }
  if (response.status === 403) {
    throw new QueryError(403, "Operators only: this token's role is not operator (HTTP 403).");
  }
  if (!response.ok || body.status !== "success" || !body.data) {
    throw new QueryError(response.status, body.error ?? body.message ?? `HTTP ${response.status}`);
  }
  return body.data;
}

const number = (value: string): number => {
  const parsed = Number(value);
  return Number.isFinite(parsed) ? parsed : NaN;
};

// A range query: one sample every step seconds from start to end (unix seconds).
export async function queryRange(query: string, start: number, end: number, step: number): Promise<Series[]> {
  const data = await get("query_range", {
    query,
    start: String(start),
    end: String(end),
    step: String(step),
  });
  return (data?.result ?? []).map((r) => ({
    metric: r.metric,
    values: (r.values ?? []).map(([t, v]) => [t, number(v)] as [number, number]),
  }));
}

// An instant query: each series' value now.
export async function query(expression: string): Promise<{ metric: Record<string, string>; value: number }[]> {
  const data = await get("query", { query: expression });
  return (data?.result ?? []).map((r) => ({ metric: r.metric, value: number(r.value?.[1] ?? "NaN") }));
}

// A label value as PromQL takes it inside double quotes.
export function quoted(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
}
