/**
 * A real OAuth 2.0 authorization server for tests: oidc-provider in-process on 127.0.0.1 (port 0), with the
 * client credentials grant, one client_secret_basic and one client_secret_post client, and one resource
 * server reachable through the Auth0-style `audience` parameter (mapped to an RFC 8707 resource, which
 * is how an operator bridges the two) that gets JWT access tokens.
 */
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair } from 'jose'
import Provider, { errors } from 'oidc-provider'

export const oidcClients = {
  basic: { client_id: 'billing-basic', client_secret: 'basic-secret-0123456789abcdef0123456789' },
  post: { client_id: 'billing-post', client_secret: 'post-secret-0123456789abcdef0123456789ab' }
} as const

/** The one audience (resource indicator) this server knows; tokens for it are JWTs living 900 s. */
export const oidcAudience = 'https://api.broker-test.example'
export const oidcAudienceTokenTtl = 900
/** The client credentials token life (opaque tokens; oidc-provider's default too). */
export const oidcDefaultTokenTtl = 600

export interface RunningOidcProvider {
  issuer: string
  tokenUrl: string
  provider: Provider
  close: () => Promise<void>
}

/** Starts oidc-provider on 127.0.0.1:0. */
export async function startOidcProvider (): Promise<RunningOidcProvider> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const { privateKey } = await generateKeyPair('RS256', { extractable: true })
  const jwk = { ...await exportJWK(privateKey), kid: 'test-key', alg: 'RS256', use: 'sig' }
  const client = (id: string, secret: string, method: string): Record<string, unknown> => ({
    client_id: id,
    client_secret: secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: method,
    scope: 'read write'
  })

  const provider = new Provider(issuer, {
    clients: [
      client(oidcClients.basic.client_id, oidcClients.basic.client_secret, 'client_secret_basic'),
      client(oidcClients.post.client_id, oidcClients.post.client_secret, 'client_secret_post')
    ],
    jwks: { keys: [jwk] },
    cookies: { keys: ['oidc-provider-test-cookie-key'] },
    // 'admin' exists on the server but is not granted to the clients: requesting it is invalid_scope.
    scopes: ['read', 'write', 'admin'],
    // Explicit (the default logs a notice); a resource server's own TTL wins, as in the default.
    ttl: {
      ClientCredentials: (_ctx: unknown, token: { resourceServer?: { accessTokenTTL?: number } }) => token.resourceServer?.accessTokenTTL ?? oidcDefaultTokenTtl
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx: { oidc: { body?: Record<string, unknown> } }) => {
          const audience = ctx.oidc.body?.audience
          return typeof audience === 'string' ? audience : undefined
        },
        getResourceServerInfo: (_ctx: unknown, resource: string) => {
          if (resource !== oidcAudience) throw new errors.InvalidTarget('unknown audience')
          return { scope: 'read write', audience: resource, accessTokenTTL: oidcAudienceTokenTtl, accessTokenFormat: 'jwt' }
        },
        useGrantedResource: () => true
      }
    }
  })
  const handle = provider.callback()
  server.on('request', (req: IncomingMessage, res: ServerResponse) => { handle(req, res) })

  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    provider,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}
