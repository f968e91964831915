// A failed call, in words a person understands: what happened, then the code and the
// server's or gateway's own message.
import { RpcError } from "@protobuf-ts/runtime-rpc";

export function describe(err: unknown, endpoint: string, deadlineSeconds: number): string {
  if (!(err instanceof RpcError)) {
    return `Something went wrong in the page: ${String(err)}`;
  }
  const detail = err.message ? `: ${err.message}` : "";
  switch (err.code) {
    case "UNAVAILABLE":
      return `The Greeter server is down or unreachable; the gateway could not reach it (UNAVAILABLE${detail}).`;
    case "DEADLINE_EXCEEDED":
      return `No answer within the deadline of ${deadlineSeconds} s (DEADLINE_EXCEEDED${detail}).`;
    case "RESOURCE_EXHAUSTED":
      return `The server or the gateway is at one of its limits; try again later (RESOURCE_EXHAUSTED${detail}).`;
    case "PERMISSION_DENIED":
      return `You are not allowed to make this call (PERMISSION_DENIED${detail}).`;
    case "UNAUTHENTICATED":
      return `This call needs you to sign in (UNAUTHENTICATED${detail}).`;
    case "INVALID_ARGUMENT":
      return `The server refused the request as invalid (INVALID_ARGUMENT${detail}).`;
    case "CANCELLED":
      return "Stopped.";
    case "INTERNAL":
      // fetch() itself failed: no HTTP reply at all, or one the browser hid from the page.
      if (/fetch|network/i.test(err.message)) {
        return `Cannot reach the gateway at ${endpoint}: it is down, or it does not allow calls from this page's origin (CORS).`;
      }
      return `The call failed inside the server or the gateway (INTERNAL${detail}).`;
    default:
      return `The call failed (${err.code}${detail}).`;
  }
}
