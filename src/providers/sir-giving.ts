/**
 * SIR Giving partner API: static keys, no tokens; every server-to-server request carries X-Partner-Key,
 * X-Timestamp and an HMAC X-Signature. Contract: docs/providers.md § SIR Giving.
 */
import { createHmac } from 'node:crypto'
import { z } from 'zod'
import { requireSecretFields, secretField } from './common.js'
import type { ProviderContext, SecretData, SigningAdapter, SigningProviderDescriptor, SigningRequest } from './types.js'
import { sirGivingWebhookVerifier } from './webhooks.js'

/** sha256 of the empty body, as documented ("Empty body hashes to e3b0c442…b855"). */
export const emptyBodySha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

/** What a signing request must look like; routes can validate with it before calling `sign`. */
export const SigningRequestSchema = z.object({
  method: z.string().regex(/^[A-Za-z]{1,16}$/, 'expected an HTTP method such as GET or POST'),
  path: z.string().regex(/^\/\S*$/, 'expected the path with query string, starting with "/" and without spaces'),
  bodySha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected 64 hex characters (sha256 of the raw body)')
})

/** Documented hosts (docs/providers.md § SIR Giving): pk_test_/sk_test_ keys on the sandbox, pk_live_/sk_live_ in production. */
const hosts = {
  production: 'https://api.sirgiving.org',
  sandbox: 'https://devapi.sirgiving.org'
} as const

// hmacSecret is optional: legacy keys sign with the secret key itself (docs/providers.md).
const secretFields = ['secretKey'] as const

/** Creates the SIR Giving request signer. */
export function createSirGivingAdapter (): SigningAdapter {
  const warnedLegacy = new Set<string>()
  return {
    kind: 'signing',
    provider: 'sir-giving',
    secretFields,
    sign: (request: SigningRequest, secret: SecretData, ctx: ProviderContext): Record<string, string> => {
      requireSecretFields('sir-giving', secret, secretFields)
      const parsed = SigningRequestSchema.safeParse(request)
      if (!parsed.success) {
        throw new TypeError(`invalid signing request: ${parsed.error.issues.map(issue => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`)
      }
      const secretKey = secretField(secret, 'secretKey')
      const hmacSecret = secret.hmacSecret
      const legacy = hmacSecret === undefined || hmacSecret === ''
      if (legacy && !warnedLegacy.has(ctx.credential.id)) {
        warnedLegacy.add(ctx.credential.id)
        ctx.log.warn({}, 'sir-giving secret has no hmacSecret; signing with secretKey (legacy keys)')
      }
      // Signed at call time: the server accepts ±5 minutes and every retry needs a fresh timestamp.
      const timestamp = String(Math.floor(ctx.now() / 1000))
      // timestamp + METHOD + pathWithQueryString + hex(sha256(body)), joined with no separator.
      const signature = createHmac('sha256', legacy ? secretKey : hmacSecret)
        .update(timestamp + parsed.data.method.toUpperCase() + parsed.data.path + parsed.data.bodySha256.toLowerCase())
        .digest('hex')
      return {
        'X-Partner-Key': secretKey,
        'X-Timestamp': timestamp,
        'X-Signature': signature
      }
    }
  }
}

export const sirGivingProvider: SigningProviderDescriptor = {
  mechanism: 'signing',
  hosts,
  defaultLifetimeSeconds: undefined,
  secretFields,
  optionalSecretFields: ['hmacSecret', 'publicKey', 'webhookSecret'],
  acceptsScope: false,
  alwaysBackendOnly: true,
  webhookVerifier: sirGivingWebhookVerifier,
  createAdapter: createSirGivingAdapter
}
