import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'

/** A Kubernetes memory quantity (256Mi, 1Gi, 300M, 268435456) in bytes; NaN when it is none. */
export function memoryQuantityBytes (quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(quantity)
  if (match === null) return Number.NaN
  const unit: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, K: 1e3, M: 1e6, G: 1e9, '': 1 }
  return Number(match[1]) * (unit[match[2] ?? ''] as number)
}

/** The broker container's `resources.limits.memory` in deploy/kubernetes/deployment.yaml, in bytes. */
export function deploymentMemoryLimitBytes (): number {
  const text = readFileSync(fileURLToPath(new URL('../../deploy/kubernetes/deployment.yaml', import.meta.url)), 'utf8')
  for (const document of parseAllDocuments(text)) {
    const object = document.toJS() as { kind?: string, spec?: { template?: { spec?: { containers?: Array<{ resources?: { limits?: { memory?: unknown } } }> } } } } | null
    if (object?.kind !== 'Deployment') continue
    const memory = object.spec?.template?.spec?.containers?.[0]?.resources?.limits?.memory
    if (memory !== undefined) return memoryQuantityBytes(String(memory))
  }
  throw new Error('deploy/kubernetes/deployment.yaml: no Deployment with a container memory limit')
}
