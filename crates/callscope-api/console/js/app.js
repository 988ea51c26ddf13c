// The console's entry point: marks the current page in the navigation, wires the
// sign-out button and builds the page the server named in <meta name="cs-page">.

import { meta, signOut } from './api.js';

const page = meta('cs-page');

for (const a of document.querySelectorAll('[data-nav]')) {
  const current = (page === 'call' || page === 'not-found' ? 'calls' : page) === a.dataset.nav;
  if (current) a.setAttribute('aria-current', 'page');
}

document.getElementById('sign-out')?.addEventListener('click', (ev) => {
  ev.currentTarget.disabled = true;
  signOut();
});

const main = document.getElementById('main');
const pages = {
  calls: () => import('./calls.js'),
  call: () => import('./call.js'),
  search: () => import('./search.js'),
};

if (pages[page]) {
  pages[page]()
    .then((m) => m.render(main))
    .catch((e) => {
      main.textContent = '';
      const box = document.createElement('div');
      box.className = 'state state-error';
      box.setAttribute('role', 'alert');
      const h = document.createElement('h1');
      h.textContent = 'This page could not be shown';
      const p = document.createElement('p');
      p.textContent = String(e && e.message ? e.message : e);
      box.append(h, p);
      main.append(box);
    });
} else if (page === 'not-found') {
  document.title = 'Not found · callscope';
}
