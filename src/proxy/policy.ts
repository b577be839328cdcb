/**
 * What a credential lets callers do through the proxy, checked before anything is sent: its method and
 * path narrowing (`proxy.methods`, `proxy.allowed_paths` → 403), its body limit (413), whether it has an API
 * to call at all (generic OAuth2 without `api_base_url` → 409); and whether a SIR Giving credential still
 * hands its partner key to callers (`expose_partner_key: false` → POST /signatures answers 409).
 * The caller's own permission (allowed_callers) is checked for every /v1 route by routes/v1.ts.
 */
import type { CredentialConfig } from '../config.js'
import { BrokerError } from '../errors.js'
import { apiBaseUrlFor } from '../providers/catalog.js'
import { underAllowedPath } from './path.js'

/** The API base the credential's proxied requests go to; 409 when it has none. */
export function apiBaseOf (credential: CredentialConfig): URL {
  const base = apiBaseUrlFor(credential)
  if (base === undefined) {
    throw new BrokerError('CB_UNSUPPORTED_OPERATION', `credential "${credential.id}" has no API to proxy to: ${credential.provider} credentials need api_base_url`)
  }
  return new URL(base)
}

/** 403 for a method or path outside the credential's `proxy` narrowing; `path` is "/" + what followed `/proxy/`. */
export function assertProxyAllowed (credential: CredentialConfig, method: string, path: string): void {
  const { methods, allowed_paths: allowedPaths } = credential.proxy
  if (methods !== undefined && !(methods as readonly string[]).includes(method)) {
    throw new BrokerError('CB_FORBIDDEN', `credential "${credential.id}" does not allow ${method} through the proxy (proxy.methods)`)
  }
  if (allowedPaths !== undefined && !underAllowedPath(path, allowedPaths)) {
    throw new BrokerError('CB_FORBIDDEN', `credential "${credential.id}" does not allow this path through the proxy (proxy.allowed_paths)`)
  }
}

/** 413 for a body over the credential's `proxy.body_limit` (the route's own limit is the largest of them). */
export function assertBodyWithinLimit (credential: CredentialConfig, body: Buffer): void {
  if (body.length > credential.proxy.body_limit) {
    throw new BrokerError('CB_PAYLOAD_TOO_LARGE', `the request body is larger than credential "${credential.id}" accepts (${credential.proxy.body_limit} bytes, proxy.body_limit)`)
  }
}

/** POST /signatures on a SIR Giving credential with `expose_partner_key: false`: 409, the key stays in the broker. */
export function assertPartnerKeyExposed (credential: CredentialConfig): void {
  if (credential.expose_partner_key === false) {
    throw new BrokerError('CB_UNSUPPORTED_OPERATION', `credential "${credential.id}" does not hand out its partner key (expose_partner_key: false); call the provider through /v1/credentials/${credential.id}/proxy/`)
  }
}
