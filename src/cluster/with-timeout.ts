// A promise that rejects with the caller's error if `p` has not settled within `ms` milliseconds.

import type { CommError } from './comm-error';

export function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => CommError): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(onTimeout()), Math.max(1, ms));
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
