import type { FastifyPluginAsync } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { Caller, CredentialConfig } from '../config.js'
import { fingerprint } from '../broker/grant-identity.js'
import { routeOf } from '../observability/audit.js'
import { descriptorOf } from '../providers/catalog.js'
import { adminDocs } from './operations.js'
import { CredentialIdParams, CredentialStatusSchema, problems, toStatusBody } from './schemas.js'

export const AdminCredentialSchema = CredentialStatusSchema.extend({
  allowed_callers: z.array(z.string()),
  secret_path: z.string(),
  backend_only: z.boolean()
}).meta({ id: 'AdminCredentialStatus' })

/** Operator view of every credential, and forced refresh. Admin callers only (`config.admin`, checked by routes/v1.ts). */
export const adminRoutes: FastifyPluginAsync = async (app) => {
  const api = app.withTypeProvider<ZodTypeProvider>()
  const credentialsById = new Map(app.config.credentials.map(credential => [credential.id, credential]))

  api.get('/credentials', {
    config: { admin: true },
    schema: {
      ...adminDocs.listAllCredentials,
      response: { 200: z.object({ credentials: z.array(AdminCredentialSchema) }), ...problems(401, 403, 429, 503) }
    }
  }, async () => {
    return {
      credentials: app.broker.statuses().flatMap(status => {
        const credential = credentialsById.get(status.id)
        if (credential === undefined) return []
        return [{ ...toStatusBody(status, descriptorOf(credential.provider).mechanism), allowed_callers: [...credential.allowed_callers], secret_path: credential.secret, backend_only: credential.backend_only }]
      })
    }
  })

  api.post('/credentials/:id/refresh', {
    config: { admin: true },
    schema: {
      ...adminDocs.refreshCredential,
      params: CredentialIdParams,
      response: {
        200: z.object({ id: z.string(), expires_at: z.iso.datetime(), obtained_at: z.iso.datetime(), fingerprint: z.string() }),
        ...problems(400, 401, 403, 404, 409, 413, 415, 429, 502, 503)
      }
    }
  }, async (request) => {
    const credential = request.credential as CredentialConfig
    const { grant } = await app.broker.forceRefresh(credential.id)
    app.audit.record(request, { caller: (request.caller as Caller).id, credentialId: credential.id, outcome: 'refreshed', route: routeOf(request), fingerprint: fingerprint(grant.accessToken) }, 'forced refresh')
    // The operator sees that it worked, not the token.
    return { id: credential.id, expires_at: new Date(grant.expiresAt).toISOString(), obtained_at: new Date(grant.obtainedAt).toISOString(), fingerprint: fingerprint(grant.accessToken) }
  })
}
