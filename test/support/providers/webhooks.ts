/**
 * Signed webhook deliveries as each provider documents them (docs/providers.md), computed here with node:crypto
 * from the documented formulas — independently of src/providers/webhooks.ts — so tests of the verifiers
 * (and of the broker's webhook route) check the contract, not our own code against itself.
 */
import { createHmac } from 'node:crypto'

type Headers = Record<string, string | string[]>

/**
 * Kivra: one `v1=<sig>` per secret in rotation, HMAC-SHA256 over `timestamp + ":" + rawBody`. The docs do
 * not say hex or base64, so both can be produced. `join` 'comma' puts all entries in one header value,
 * 'repeat' sends the header once per entry (an array, as Node presents repeated headers).
 */
export function kivraWebhookHeaders (rawBody: string | Buffer, secrets: readonly string[], options: { timestamp: string, encoding?: 'hex' | 'base64', join?: 'comma' | 'repeat' }): Headers {
  const entries = secrets.map(secret => `v1=${createHmac('sha256', secret).update(`${options.timestamp}:`).update(rawBody).digest(options.encoding ?? 'hex')}`)
  return {
    'x-kivra-timestamp': options.timestamp,
    'x-kivra-signature': options.join === 'repeat' ? entries : entries.join(',')
  }
}

/** Klavi: hex HMAC-SHA256 of the raw body keyed with the partner secretKey, plus X-Klavi-Timestamp (unsigned). */
export function klaviWebhookHeaders (rawBody: string | Buffer, secretKey: string, options: { timestamp?: string } = {}): Headers {
  const headers: Headers = { 'x-klavi-signature': createHmac('sha256', secretKey).update(rawBody).digest('hex') }
  if (options.timestamp !== undefined) headers['x-klavi-timestamp'] = options.timestamp
  return headers
}

/** SIR Giving: `X-SIR-Signature: sha256=<hex>` over `timestamp + "." + rawBody` keyed with the whsec_ secret. */
export function sirGivingWebhookHeaders (rawBody: string | Buffer, webhookSecret: string, options: { timestamp: string }): Headers {
  const signature = createHmac('sha256', webhookSecret).update(`${options.timestamp}.`).update(rawBody).digest('hex')
  return { 'x-sir-signature': `sha256=${signature}`, 'x-sir-timestamp': options.timestamp }
}
