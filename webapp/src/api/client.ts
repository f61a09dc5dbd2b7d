// The REST client: typed by the generated `paths` (no hand-written API shapes), with the session's bearer token on
// every request. A failed call throws an ApiError carrying the server's stable `code` (ErrorBody), which the UI
// turns into a message in the user's language (i18n `errorText`).
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type User = components["schemas"]["User"];
export type UserSummary = components["schemas"]["UserSummary"];
export type Conversation = components["schemas"]["Conversation"];
export type ErrorBody = components["schemas"]["ErrorBody"];

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string) {
    super(code);
  }
}

let token: string | null = null;

export function setToken(next: string | null): void {
  token = next;
}

const auth: Middleware = {
  onRequest({ request }) {
    if (token) request.headers.set("Authorization", `Bearer ${token}`);
    return request;
  },
};

export const api = createClient<paths>({ baseUrl: "" });
api.use(auth);

/** The data of a call, or an ApiError (status 0, code `network` when the server could not be reached). */
export async function call<T>(
  request: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let result;
  try {
    result = await request;
  } catch {
    throw new ApiError(0, "network");
  }
  if (result.error !== undefined || result.data === undefined) {
    const code = (result.error as Partial<ErrorBody> | undefined)?.code;
    throw new ApiError(result.response.status, typeof code === "string" ? code : "internal");
  }
  return result.data;
}

/** A call whose success has no body (204, or one the caller does not need). */
export async function callVoid(request: Promise<{ error?: unknown; response: Response }>): Promise<void> {
  let result;
  try {
    result = await request;
  } catch {
    throw new ApiError(0, "network");
  }
  if (!result.response.ok) {
    const code = (result.error as Partial<ErrorBody> | undefined)?.code;
    throw new ApiError(result.response.status, typeof code === "string" ? code : "internal");
  }
}
