/**
 * Webhook signature verifiers (docs/providers.md: Kivra, Klavi, SIR Giving). The broker holds the webhook
 * secrets, so receivers hand it the raw body and headers. All comparisons are constant-time over
 * equal-length digests; timestamps are checked against `ctx.toleranceSeconds` in both directions.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { SecretData, WebhookInput, WebhookResult, WebhookVerifier } from './types.js'

type Headers = WebhookInput['headers']

/** Every value of a header (repeated headers arrive as arrays), each split on commas, trimmed. */
function headerEntries (headers: Headers, name: string): string[] {
  const value = headers[name]
  const values = value === undefined ? [] : typeof value === 'string' ? [value] : [...value]
  return values.flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== '')
}

function firstHeader (headers: Headers, name: string): string | undefined {
  const value = headers[name]
  const first = typeof value === 'string' ? value : value?.[0]
  return first === undefined || first.trim() === '' ? undefined : first.trim()
}

/** Several comma-separated secrets may be configured during a rotation; any of them may have signed. */
function rotatingSecrets (value: string | undefined): string[] {
  return (value ?? '').split(',').map(s => s.trim()).filter(s => s !== '')
}

/**
 * A webhook timestamp as epoch ms: Unix seconds or milliseconds (a 12+ digit number cannot be seconds
 * before the year 5000), or an ISO 8601 date since Kivra does not document its format.
 */
export function parseWebhookTimestampMs (value: string): number | undefined {
  if (/^\d{1,16}$/.test(value)) {
    const n = Number(value)
    return n >= 1e11 ? n : n * 1000
  }
  if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    const ms = Date.parse(value)
    return Number.isNaN(ms) ? undefined : ms
  }
  return undefined
}

function isFresh (timestamp: string, ctx: { now: () => number, toleranceSeconds: number }): boolean {
  const ms = parseWebhookTimestampMs(timestamp)
  return ms !== undefined && Math.abs(ctx.now() - ms) <= ctx.toleranceSeconds * 1000
}

/** A 32-byte signature from hex (64 chars) or base64/base64url (43-44 chars); undefined otherwise. */
function decodeSha256Signature (text: string, encodings: ReadonlyArray<'hex' | 'base64'>): Buffer | undefined {
  if (encodings.includes('hex') && /^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex')
  if (encodings.includes('base64') && /^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
    const bytes = Buffer.from(text, 'base64')
    return bytes.length === 32 ? bytes : undefined
  }
  return undefined
}

/** True when any candidate equals the HMAC of `payload` under any secret, compared in constant time. */
function anyMatches (secrets: readonly string[], payload: Buffer, candidates: ReadonlyArray<Buffer | undefined>): boolean {
  let matched = false
  for (const secret of secrets) {
    const expected = createHmac('sha256', secret).update(payload).digest()
    for (const candidate of candidates) {
      // No early exit: the time taken does not depend on which entry (if any) matched.
      if (candidate !== undefined && candidate.length === expected.length && timingSafeEqual(candidate, expected)) matched = true
    }
  }
  return matched
}

/**
 * Kivra: `X-KIVRA-SIGNATURE: v1=<sig>` once per secret in rotation (comma-separated and/or repeated),
 * HMAC-SHA256 over `timestamp + ":" + rawBody`, hex or base64 (not stated, so both). Secret field
 * `webhookSecret`, possibly several comma-separated secrets while rotating.
 */
export const kivraWebhookVerifier: WebhookVerifier = {
  provider: 'kivra',
  verify: (input: WebhookInput, secret: SecretData, ctx): WebhookResult => {
    const secrets = rotatingSecrets(secret.webhookSecret)
    if (secrets.length === 0) return { valid: false, reason: 'no_webhook_secret' }
    const entries = headerEntries(input.headers, 'x-kivra-signature')
    if (entries.length === 0) return { valid: false, reason: 'missing_signature' }
    const timestamp = firstHeader(input.headers, 'x-kivra-timestamp')
    if (timestamp === undefined) return { valid: false, reason: 'missing_timestamp' }
    if (!isFresh(timestamp, ctx)) return { valid: false, reason: 'stale_timestamp' }
    // Other scheme versions (v0=, v2=) are ignored, so a future scheme added beside v1 does not break us.
    const candidates = entries.filter(e => e.startsWith('v1=')).map(e => decodeSha256Signature(e.slice(3), ['hex', 'base64']))
    const payload = Buffer.concat([Buffer.from(`${timestamp}:`, 'utf8'), input.rawBody])
    return anyMatches(secrets, payload, candidates) ? { valid: true } : { valid: false, reason: 'bad_signature' }
  }
}

/**
 * Klavi: `X-Klavi-Signature` = hex HMAC-SHA256 of the raw body keyed with the partner `secretKey` (the same
 * key as the API credential). The timestamp is not signed, so it is only checked for freshness when sent.
 */
export const klaviWebhookVerifier: WebhookVerifier = {
  provider: 'klavi',
  verify: (input: WebhookInput, secret: SecretData, ctx): WebhookResult => {
    const key = secret.secretKey
    if (key === undefined || key === '') return { valid: false, reason: 'no_webhook_secret' }
    const signature = firstHeader(input.headers, 'x-klavi-signature')
    if (signature === undefined) return { valid: false, reason: 'missing_signature' }
    const timestamp = firstHeader(input.headers, 'x-klavi-timestamp')
    if (timestamp !== undefined && !isFresh(timestamp, ctx)) return { valid: false, reason: 'stale_timestamp' }
    const candidate = decodeSha256Signature(signature, ['hex'])
    return anyMatches([key], input.rawBody, [candidate]) ? { valid: true } : { valid: false, reason: 'bad_signature' }
  }
}

/**
 * SIR Giving: `X-SIR-Signature: sha256=<hex>`, `X-SIR-Timestamp`, HMAC-SHA256 hex over
 * `timestamp + "." + rawBody` keyed with the `webhookSecret` (whsec_…) used as is, not decoded.
 */
export const sirGivingWebhookVerifier: WebhookVerifier = {
  provider: 'sir-giving',
  verify: (input: WebhookInput, secret: SecretData, ctx): WebhookResult => {
    const secrets = rotatingSecrets(secret.webhookSecret)
    if (secrets.length === 0) return { valid: false, reason: 'no_webhook_secret' }
    const entries = headerEntries(input.headers, 'x-sir-signature')
    if (entries.length === 0) return { valid: false, reason: 'missing_signature' }
    const timestamp = firstHeader(input.headers, 'x-sir-timestamp')
    if (timestamp === undefined) return { valid: false, reason: 'missing_timestamp' }
    if (!isFresh(timestamp, ctx)) return { valid: false, reason: 'stale_timestamp' }
    const candidates = entries.filter(e => e.startsWith('sha256=')).map(e => decodeSha256Signature(e.slice(7), ['hex']))
    const payload = Buffer.concat([Buffer.from(`${timestamp}.`, 'utf8'), input.rawBody])
    return anyMatches(secrets, payload, candidates) ? { valid: true } : { valid: false, reason: 'bad_signature' }
  }
}
