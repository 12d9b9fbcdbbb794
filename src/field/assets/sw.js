// The field app's service worker: keeps the app's own files (and only those) so the app opens with
// no network. API calls are never intercepted nor cached: the app keeps routes and reads in IndexedDB
// itself, and every call carries the device token. The gateway writes the app's version below (a hash
// of the app's files), so a new gateway replaces the cache with its own files.

const VERSION = "%VERSION%";
const CACHE = `field-${VERSION}`;
const FILES = %FILES%;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(FILES.map((f) => new Request(f, { cache: "no-cache" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("field-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname !== "/field" && !url.pathname.startsWith("/field/")) return;
  // The page itself, however it is asked for (`/field`, `/field/`, `/field/#stop/…`).
  const wanted = url.pathname === "/field" || url.pathname === "/field/index.html" ? "/field/" : url.pathname;
  event.respondWith(
    caches.open(CACHE).then(async (cache) => {
      const hit = await cache.match(wanted);
      if (hit) return hit;
      return fetch(request);
    }),
  );
});
