/** Vault: address, auth method and its inputs, TLS trust (VAULT_CACERT, VAULT_CAPATH). */
import { X509Certificate } from 'node:crypto'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Env } from '../config.js'

export interface VaultConfig {
  readonly addr: string
  readonly namespace: string | undefined
  readonly auth: Env['VAULT_AUTH']
  /** VAULT_TOKEN, or the content of VAULT_TOKEN_FILE at start. */
  readonly token: string | undefined
  /** VAULT_TOKEN_FILE: read again when Vault stops accepting the token (a Vault Agent sink rewrites it). */
  readonly tokenFile?: string | undefined
  /** PEM certificates of the CAs trusted for Vault's TLS (VAULT_CACERT, else VAULT_CAPATH); undefined: the system CAs. */
  readonly ca?: readonly string[] | undefined
  readonly roleId: string | undefined
  readonly secretId: string | undefined
  readonly approleMount: string
  readonly k8sRole: string | undefined
  readonly k8sTokenPath: string
  readonly k8sMount: string
  readonly timeoutMs: number
}
const pemCertificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/** The PEM certificates in `text`, each checked to parse; a broken one is a problem naming `where`. */
function pemCertificates (text: string, where: string, problems: string[]): string[] {
  const certificates = text.match(pemCertificate) ?? []
  for (const [index, pem] of certificates.entries()) {
    try {
      void new X509Certificate(pem)
    } catch {
      problems.push(`${where}: certificate ${index + 1} is not a valid PEM certificate`)
    }
  }
  return certificates
}

/**
 * The CAs for Vault's TLS, as the Vault CLI reads them: VAULT_CACERT (one PEM file, which may hold several
 * certificates) before VAULT_CAPATH (every PEM file in a directory). They replace the system CAs for Vault.
 */
function readVaultCa (env: Env, problems: string[]): string[] | undefined {
  if (env.VAULT_CACERT !== undefined) {
    let text: string
    try {
      text = readFileSync(env.VAULT_CACERT, 'utf8')
    } catch (err) {
      problems.push(`VAULT_CACERT: cannot read "${env.VAULT_CACERT}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a PEM file of the CA that signs Vault's certificate`)
      return undefined
    }
    const certificates = pemCertificates(text, `VAULT_CACERT "${env.VAULT_CACERT}"`, problems)
    if (certificates.length === 0) problems.push(`VAULT_CACERT: "${env.VAULT_CACERT}" holds no PEM certificate (-----BEGIN CERTIFICATE-----)`)
    return certificates
  }
  if (env.VAULT_CAPATH !== undefined) {
    let names: string[]
    try {
      names = readdirSync(env.VAULT_CAPATH).sort()
    } catch (err) {
      problems.push(`VAULT_CAPATH: cannot read the directory "${env.VAULT_CAPATH}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a directory of PEM CA files`)
      return undefined
    }
    const certificates: string[] = []
    for (const name of names) {
      const file = join(env.VAULT_CAPATH, name)
      try {
        if (!statSync(file).isFile()) continue
        certificates.push(...pemCertificates(readFileSync(file, 'utf8'), `VAULT_CAPATH "${file}"`, problems))
      } catch {
        // An unreadable entry (a dangling link) is skipped, as in a system CA directory.
      }
    }
    if (certificates.length === 0) problems.push(`VAULT_CAPATH: "${env.VAULT_CAPATH}" holds no PEM certificate`)
    return certificates
  }
  return undefined
}

/** Reads NAME or the file named by NAME_FILE. An unreadable file is reported here (and counts as given). */
function readSecretFileVariable (env: Record<string, string | undefined>, name: string, problems: string[]): string | null | undefined {
  const file = env[`${name}_FILE`]
  if (file === undefined || file === '') return env[name] === '' ? undefined : env[name]
  try {
    return readFileSync(file, 'utf8').trim()
  } catch (err) {
    problems.push(`${name}_FILE: cannot read "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a readable file`)
    return null
  }
}
/** Vault's connection and auth settings; a missing auth input for the chosen method is a problem. */
export function vaultConfig (env: Env, addr: string, environment: Record<string, string | undefined>, problems: string[]): VaultConfig {
  const token = readSecretFileVariable(environment, 'VAULT_TOKEN', problems)
  const roleId = readSecretFileVariable(environment, 'VAULT_ROLE_ID', problems)
  const secretId = readSecretFileVariable(environment, 'VAULT_SECRET_ID', problems)
  if (env.VAULT_AUTH === 'token' && token === undefined) problems.push('VAULT_TOKEN: required when VAULT_AUTH=token; expected a Vault token (or VAULT_TOKEN_FILE)')
  if (env.VAULT_AUTH === 'approle') {
    if (roleId === undefined) problems.push('VAULT_ROLE_ID: required when VAULT_AUTH=approle (or VAULT_ROLE_ID_FILE)')
    if (secretId === undefined) problems.push('VAULT_SECRET_ID: required when VAULT_AUTH=approle (or VAULT_SECRET_ID_FILE)')
  }
  if (env.VAULT_AUTH === 'kubernetes' && env.VAULT_K8S_ROLE === undefined) problems.push('VAULT_K8S_ROLE: required when VAULT_AUTH=kubernetes; expected the Vault role bound to this service account')
  const ca = readVaultCa(env, problems)
  return {
    addr: addr.replace(/\/+$/, ''),
    namespace: env.VAULT_NAMESPACE,
    auth: env.VAULT_AUTH,
    token: token ?? undefined,
    // As given (relative to the working directory), like the start-up read of VAULT_TOKEN_FILE above.
    tokenFile: env.VAULT_AUTH === 'token' ? env.VAULT_TOKEN_FILE : undefined,
    ca,
    roleId: roleId ?? undefined,
    secretId: secretId ?? undefined,
    approleMount: env.VAULT_APPROLE_MOUNT,
    k8sRole: env.VAULT_K8S_ROLE,
    k8sTokenPath: env.VAULT_K8S_TOKEN_PATH,
    k8sMount: env.VAULT_K8S_MOUNT,
    timeoutMs: env.VAULT_TIMEOUT_MS
  }
}
