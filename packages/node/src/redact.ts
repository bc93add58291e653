/** Secrets stripped from storage locations before they reach a message, a log or a label (STYLE.md 8). */

const secretParam = /secret|token|key|sig|password|credential|auth/i;

function hasSecret(url: string): boolean {
  try {
    const u = new URL(url);
    return u.password !== '' || [...u.searchParams.keys()].some((k) => secretParam.test(k));
  } catch {
    return /\/\/[^@/]*@/.test(url);
  }
}

/**
 * The URL with any password or token removed, for messages and logs: the password of the user
 * part, every query parameter whose name looks secret, and the same inside query values that are
 * URLs themselves (`?endpoint=http://user:pw@host`).
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const [k, v] of [...u.searchParams.entries()]) {
      if (secretParam.test(k)) u.searchParams.set(k, '***');
      else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v) && hasSecret(v)) u.searchParams.set(k, redactUrl(v));
    }
    return u.toString();
  } catch {
    // Not a URL: show no more than the scheme and host part of something that looks like one.
    return url.replace(/\/\/[^@/]*@/, '//***@');
  }
}
