/**
 * The proxy's part of a credential (README "Calling providers through the broker"): where the proxy sends
 * requests (`api_base_url`), what it may send (`proxy`), and whether a SIR Giving credential still hands
 * its partner key to callers (`expose_partner_key`). Spread into CredentialSchema by credentials-file.ts.
 */
import { z } from 'zod'
import { providerUrl } from './provider-url.js'

/** Methods the proxy route serves; `proxy.methods` narrows them per credential. */
export const proxyMethods = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const

/** Default and largest request body the proxy buffers (it is kept in memory so a retry can send it again). */
export const defaultProxyBodyLimitBytes = 1_048_576
const maxProxyBodyLimitBytes = 16 * 1_048_576

/**
 * An API base: a provider URL (src/config/provider-url.ts; the https-unless-loopback rule is applied with
 * the other URL fields in CredentialSchema), and no query or fragment: its path is the prefix every proxied
 * path goes under.
 */
export const ApiBaseUrlSchema = providerUrl
  .refine(text => { if (!URL.canParse(text)) return true; const url = new URL(text); return url.search === '' && url.hash === '' }, 'expected no query or fragment (the path is the prefix every proxied path goes under)')

/** A path prefix callers may proxy under: starts with "/", no query, no dot segments, no "//". */
const AllowedPathSchema = z.string().max(1024)
  .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/, 'expected a path prefix starting with "/" (e.g. "/v1/")')
  .refine(path => !path.split('/').slice(1, -1).some(segment => segment === '' || segment === '.' || segment === '..'), 'expected no empty, "." or ".." segments')

export const ProxySettingsSchema = z.strictObject({
  /** Path prefixes (under the API base) callers may use; absent: any path. "/v1/" allows "/v1/…", not "/v10". */
  allowed_paths: z.array(AllowedPathSchema).min(1).max(256).optional(),
  /** Methods callers may use; absent: all of GET, HEAD, POST, PUT, PATCH, DELETE. */
  methods: z.array(z.enum(proxyMethods)).min(1).optional(),
  /** Seconds the injected token must still be valid for. */
  min_ttl: z.number().int().min(0).max(86_400).default(30),
  /** Largest request body passed upstream, in bytes (413 above it). */
  body_limit: z.number().int().min(0).max(maxProxyBodyLimitBytes).default(defaultProxyBodyLimitBytes),
  /** Bound on connecting, on the answer's headers and on each pause in its body; default the credential's timeout_ms. */
  timeout_ms: z.number().int().min(100).max(300_000).optional()
})
export type ProxySettings = z.infer<typeof ProxySettingsSchema>

const defaultProxySettings: ProxySettings = ProxySettingsSchema.parse({})

/** The credential fields the proxy adds (spread into CredentialSchema). */
export const proxyCredentialFields = {
  /** Where the proxy sends requests; default the provider's documented API host (required for oauth2 proxying). */
  api_base_url: ApiBaseUrlSchema.optional(),
  proxy: ProxySettingsSchema.default(defaultProxySettings),
  /** SIR Giving: false = POST /signatures refuses (409), so the sk_ key never leaves the broker; only the proxy signs. */
  expose_partner_key: z.boolean().optional()
}

/** Config problems of the proxy fields that depend on the provider (called from CredentialSchema's superRefine). */
export function proxyFieldProblems (credential: { provider: string, expose_partner_key?: boolean | undefined }): Array<{ path: string[], message: string }> {
  if (credential.expose_partner_key !== undefined && credential.provider !== 'sir-giving') {
    return [{ path: ['expose_partner_key'], message: 'only sir-giving credentials have a partner key' }]
  }
  return []
}
