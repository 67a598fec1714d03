// Who the user is: a JWT kept for this browser tab. In the local stack a development sign-in
// (POST /dev/token, served only while the gateway trusts the stack's development key) mints
// one for any name; elsewhere the user pastes a token from the real issuer.

export interface Session {
  token: string;
  user: string;
  // The token's role claim ("operator" may open the live sale dashboard); "user" when absent.
  role: string;
  expires: Date;
}

const KEY = "ticketing.session.token";
const listeners = new Set<() => void>();

function claims(token: string): { sub?: string; exp?: number; role?: string } {
  const part = token.split(".")[1];
  if (!part) throw new Error("that is not a JWT (three dot-separated parts)");
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
  return JSON.parse(json) as { sub?: string; exp?: number; role?: string };
}

function parse(token: string): Session {
  const { sub, exp, role } = claims(token.trim());
  if (!sub || !exp) throw new Error("the token has no subject or expiry");
  return { token: token.trim(), user: sub, role: role ?? "user", expires: new Date(exp * 1000) };
}

export function current(): Session | null {
  const token = sessionStorage.getItem(KEY);
  if (!token) return null;
  try {
    const session = parse(token);
    if (session.expires.getTime() > Date.now() + 5_000) return session;
  } catch {
    // fall through: a stored value that is not a token is dropped
  }
  sessionStorage.removeItem(KEY);
  return null;
}

function store(session: Session): Session {
  sessionStorage.setItem(KEY, session.token);
  listeners.forEach((listener) => listener());
  return session;
}

export async function signInForDevelopment(user: string): Promise<Session> {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
  const body = (await response.json().catch(() => ({}))) as { token?: string; message?: string };
  if (response.status === 404) {
    throw new Error("development sign-in is off on this gateway: paste a token instead");
  }
  if (!response.ok || !body.token) {
    throw new Error(body.message ?? `sign-in failed (HTTP ${response.status})`);
  }
  return store(parse(body.token));
}

export function signInWithToken(token: string): Session {
  return store(parse(token));
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
  listeners.forEach((listener) => listener());
}

export function onChange(listener: () => void): void {
  listeners.add(listener);
}
