/**
 * The one grammar of a secret reference: "<mount>/<path>" (split at the first slash), or "<mount>:<path>"
 * when the KV v2 mount's own name has a slash ("kv/platform:providers/kivra"). A reference with a colon is
 * always the second form. Used by config validation, TOKEN_ENCRYPTION_KEY=vault:… and the Vault source.
 */
export function parseSecretPath (path: string): { mount: string, key: string } | undefined {
  if (/\s/.test(path)) return undefined
  const colon = path.indexOf(':')
  if (colon === -1) {
    const slash = path.indexOf('/')
    if (slash <= 0 || slash === path.length - 1) return undefined
    return { mount: path.slice(0, slash), key: path.slice(slash + 1) }
  }
  const mount = path.slice(0, colon)
  const key = path.slice(colon + 1)
  const mountOk = mount !== '' && !mount.startsWith('/') && !mount.endsWith('/') && !mount.includes('//')
  return mountOk && key !== '' && !key.startsWith('/') && !key.includes(':') ? { mount, key } : undefined
}

export function isSecretPath (path: string): boolean {
  return parseSecretPath(path) !== undefined
}
