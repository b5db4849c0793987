// burnlink: progressive enhancement only. Every page works without this file; it adds upload
// progress and drag-and-drop (large files through tus, resuming after a broken connection), a Share dialog with a Copy button, and a confirmation before
// deleting. Served from /static/app.js (the CSP allows no inline script).
'use strict';

(function () {
  const $ = (selector) => document.querySelector(selector);

  // What to tell a person for each error the servers answer with (error codes as in
  // error.rs; 429 whatever the body says).
  const MESSAGES = {
    invalid_credentials: 'Unknown user or wrong password.',
    unauthorized: 'Your session has ended. Reload the page and log in again.',
    csrf: 'This page is out of date (your session changed). Reload it and try again.',
    not_found: 'That file no longer exists. Reload the page to see your files.',
    too_large: 'That file is too large.',
    too_many_files: 'You already keep the most files allowed. Delete one first.',
    insufficient_storage: 'The server has no room left for this upload. Try again later.',
    upload_expired: 'This upload took too long and expired. Start it again.',
    internal: 'Something went wrong on our side. Try again in a moment.',
    wrong_password: 'Wrong password. Nothing was stored; try again.',
    upload_link_gone: 'This upload link can no longer be used. Ask the person who sent it for a new one.',
    upload_link_full: 'This link is receiving all the files it allows right now. Try again in a moment.',
  };

  function humanSize(bytes) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? bytes + ' B' : value.toFixed(1) + ' ' + units[unit];
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return null;
    }
  }

  // A sentence for a failed request: status, parsed JSON body (or null), Retry-After header.
  function describe(status, body, retryAfter) {
    if (status === 429) {
      const secs = parseInt(retryAfter || '', 10);
      return 'Too many requests. ' +
        (secs > 0 ? 'Wait ' + secs + ' s and try again.' : 'Wait a moment and try again.');
    }
    if (status === 0) {
      return 'Could not reach the server. Check your connection and try again.';
    }
    const code = body && body.error;
    if (code === 'too_large') {
      const form = $('#upload-form');
      const max = form && Number(form.dataset.maxBytes);
      return max ? 'That file is too large: the limit is ' + humanSize(max) + '.' : MESSAGES.too_large;
    }
    if (code && MESSAGES[code]) {
      return MESSAGES[code];
    }
    if (status >= 500) {
      return MESSAGES.internal;
    }
    return (body && body.message) || 'The request failed (HTTP ' + status + ').';
  }

  function csrfToken() {
    const field = document.querySelector('input[name="csrf_token"]');
    return field ? field.value : '';
  }

  function say(element, text, isError) {
    if (!element) return;
    element.textContent = text;
    element.classList.toggle('error', Boolean(isError));
  }

  function showError(text) {
    const box = $('#messages');
    if (!box) return;
    box.textContent = '';
    const p = document.createElement('p');
    p.className = 'alert error';
    p.textContent = text;
    box.appendChild(p);
  }

  document.documentElement.classList.add('js');

  // Reveal controls that need this script.
  document.querySelectorAll('.js-only').forEach((el) => { el.hidden = false; });

  // A message carried over a reload (after an upload).
  try {
    const flash = sessionStorage.getItem('burnlink-flash');
    if (flash) {
      sessionStorage.removeItem('burnlink-flash');
      const box = $('#messages');
      if (box) {
        const p = document.createElement('p');
        p.className = 'alert ok';
        p.textContent = flash;
        box.setAttribute('role', 'status');
        box.appendChild(p);
      }
    }
  } catch (_) { /* storage disabled: no flash */ }

  // ---- Upload: XHR with progress, drag-and-drop ----
  const form = $('#upload-form');
  if (form) {
    const input = $('#file-input');
    const drop = $('#drop');
    const chosen = $('#file-chosen');
    const status = $('#upload-status');
    const progress = $('#upload-progress');
    const bar = $('#upload-bar');
    const percent = $('#upload-percent');
    const button = $('#upload-button');
    const max = Number(form.dataset.maxBytes) || Infinity;
    const tusFrom = Number(form.dataset.tusFrom) || Infinity;
    const hint = chosen ? chosen.textContent : '';
    let busy = false;

    const showChosen = () => {
      const file = input.files && input.files[0];
      chosen.textContent = file ? file.name + ' (' + humanSize(file.size) + ')' : hint;
    };
    input.addEventListener('change', showChosen);

    const showPercent = (sent, total) => {
      const pct = total > 0 ? Math.floor((sent / total) * 100) : 0;
      bar.value = pct;
      percent.textContent = pct + '%';
    };
    const finished = (file) => {
      bar.value = 100;
      percent.textContent = '100%';
      try {
        sessionStorage.setItem('burnlink-flash', 'Uploaded ' + file.name + '.');
      } catch (_) { /* no flash */ }
      window.location.replace('/');
    };

    // A large file goes through tus (/api/uploads, docs/UPLOADS.md): after a broken connection
    // tus-js-client asks where the upload stands and sends the rest from there; a page
    // reloaded mid-upload finds the upload again (its URL kept in localStorage) and carries on.
    const resumable = (file, failed) => {
      const upload = new window.tus.Upload(file, {
        endpoint: '/api/uploads',
        headers: { 'X-CSRF-Token': csrfToken() },
        metadata: { filename: file.name, filetype: file.type || '' },
        chunkSize: 16 * 1024 * 1024,
        retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
        removeFingerprintOnSuccess: true,
        onProgress: showPercent,
        onSuccess: () => finished(file),
        onError: (err) => {
          const res = err && err.originalResponse;
          failed(res ? res.getStatus() : 0, res ? parseJson(res.getBody()) : null, null);
        },
      });
      upload.findPreviousUploads().then((previous) => {
        if (previous.length > 0) upload.resumeFromPreviousUpload(previous[0]);
        upload.start();
      }, () => upload.start());
    };

    const upload = (file) => {
      if (busy) return;
      if (file.size > max) {
        say(status, 'That file is too large: the limit is ' + humanSize(max) + '.', true);
        return;
      }
      busy = true;
      button.disabled = true;
      progress.hidden = false;
      bar.value = 0;
      percent.textContent = '0%';
      say(status, 'Uploading ' + file.name + '…', false);
      if (file.size >= tusFrom && window.tus && window.tus.isSupported) {
        resumable(file, (code, body, retryAfter) => {
          busy = false;
          button.disabled = false;
          progress.hidden = true;
          say(status, describe(code, body, retryAfter), true);
        });
        return;
      }

      const data = new FormData();
      data.append('file', file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/api/files');
      xhr.setRequestHeader('X-CSRF-Token', csrfToken());
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.addEventListener('progress', (e) => {
        if (!e.lengthComputable) return;
        showPercent(e.loaded, e.total);
      });
      const done = () => {
        busy = false;
        button.disabled = false;
      };
      xhr.addEventListener('load', () => {
        if (xhr.status === 201) {
          finished(file);
          return;
        }
        done();
        progress.hidden = true;
        say(status, describe(xhr.status, parseJson(xhr.responseText),
          xhr.getResponseHeader('Retry-After')), true);
      });
      xhr.addEventListener('error', () => {
        done();
        progress.hidden = true;
        say(status, describe(0, null, null), true);
      });
      xhr.send(data);
    };

    form.addEventListener('submit', (e) => {
      const file = input.files && input.files[0];
      if (!file || typeof FormData === 'undefined') return; // the browser or the server says why
      e.preventDefault();
      upload(file);
    });

    ['dragenter', 'dragover'].forEach((type) => drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add('dragging');
    }));
    ['dragleave', 'dragend'].forEach((type) => drop.addEventListener(type, () => {
      drop.classList.remove('dragging');
    }));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('dragging');
      const files = e.dataTransfer && e.dataTransfer.files;
      if (!files || files.length === 0) return;
      try {
        input.files = files;
      } catch (_) { /* older browsers: upload anyway */ }
      showChosen();
      upload(files[0]);
    });
  }

  // ---- Share: a dialog that creates a share over the API and shows its URL ----
  const dialog = $('#share-dialog');
  let shareFileId = null;

  function copyUrl() {
    const url = $('#share-url');
    const status = $('#copy-status');
    const fallback = () => {
      url.focus();
      url.select();
      let ok = false;
      try {
        ok = document.execCommand('copy');
      } catch (_) { ok = false; }
      say(status, ok ? 'Copied.' : 'Press Ctrl+C (or ⌘+C) to copy the selected link.', !ok);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(url.value).then(() => say(status, 'Copied.', false), fallback);
    } else {
      fallback();
    }
  }

  const copyButton = $('#share-copy');
  if (copyButton) copyButton.addEventListener('click', copyUrl);

  if (dialog && typeof dialog.showModal === 'function') {
    const shareForm = $('#share-form');
    const result = $('#share-result');
    const status = $('#share-status');
    const create = $('#share-create');

    document.querySelectorAll('.share-open').forEach((link) => {
      link.addEventListener('click', (e) => {
        e.preventDefault();
        shareFileId = link.dataset.fileId;
        $('#share-name').textContent = link.dataset.name;
        shareForm.reset();
        shareForm.hidden = false;
        result.hidden = true;
        say(status, '', false);
        dialog.showModal();
      });
    });

    const close = (reload) => {
      dialog.close();
      if (reload) window.location.reload();
    };
    $('#share-cancel').addEventListener('click', () => close(false));
    $('#share-done').addEventListener('click', () => close(true));

    shareForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const data = new FormData(shareForm);
      const body = {
        expires_in_secs: Number(data.get('expires_in_secs')),
        max_downloads: Number(data.get('max_downloads')),
      };
      const password = data.get('password');
      if (password) body.password = password;
      create.disabled = true;
      say(status, 'Creating the link…', false);
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/api/files/' + encodeURIComponent(shareFileId) + '/shares');
      xhr.setRequestHeader('X-CSRF-Token', csrfToken());
      xhr.setRequestHeader('Content-Type', 'application/json');
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.addEventListener('load', () => {
        create.disabled = false;
        const reply = parseJson(xhr.responseText);
        if (xhr.status === 201 && reply && reply.url) {
          shareForm.hidden = true;
          result.hidden = false;
          const url = $('#share-url');
          url.value = reply.url;
          say($('#copy-status'), '', false);
          url.focus();
          url.select();
        } else {
          say(status, describe(xhr.status, reply, xhr.getResponseHeader('Retry-After')), true);
        }
      });
      xhr.addEventListener('error', () => {
        create.disabled = false;
        say(status, describe(0, null, null), true);
      });
      xhr.send(JSON.stringify(body));
    });
  }

  // ---- Upload link page: the same form, sent with a progress bar ----
  // The form's own fields (form token, password) go first, the file last, as without script.
  // A large file goes through tus at <link>/uploads (docs/UPLOADS.md), the form token and
  // password as headers: after a broken connection it resumes from where the server stands.
  const linkForm = $('#link-upload-form');
  if (linkForm && typeof FormData !== 'undefined') {
    const input = $('#link-file');
    const status = $('#link-status');
    const progress = $('#link-progress');
    const bar = $('#link-bar');
    const percent = $('#link-percent');
    const button = $('#link-upload-button');
    const max = Number(linkForm.dataset.maxBytes) || Infinity;
    const tusFrom = Number(linkForm.dataset.tusFrom) || Infinity;

    linkForm.addEventListener('submit', (e) => {
      const file = input.files && input.files[0];
      if (!file) return;
      e.preventDefault();
      if (file.size > max) {
        say(status, 'That file is too large: the limit is ' + humanSize(max) + '.', true);
        return;
      }
      button.disabled = true;
      progress.hidden = false;
      bar.value = 0;
      percent.textContent = '0%';
      say(status, 'Sending ' + file.name + '…', false);
      if (file.size >= tusFrom && window.tus && window.tus.isSupported) {
        const headers = { 'Burnlink-Form-Token': linkForm.elements.form_token.value };
        const password = linkForm.elements.password;
        if (password) headers['Burnlink-Link-Password'] = password.value;
        const upload = new window.tus.Upload(file, {
          endpoint: linkForm.getAttribute('action') + '/uploads',
          headers: headers,
          metadata: { filename: file.name, filetype: file.type || '' },
          chunkSize: 16 * 1024 * 1024,
          retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
          removeFingerprintOnSuccess: true,
          onProgress: (sent, total) => {
            const pct = total > 0 ? Math.floor((sent / total) * 100) : 0;
            bar.value = pct;
            percent.textContent = pct + '%';
          },
          onSuccess: () => {
            button.disabled = false;
            bar.value = 100;
            percent.textContent = '100%';
            say(status, 'Received ' + file.name + ' (' + humanSize(file.size) + ').', false);
            status.classList.add('received');
            linkForm.reset();
          },
          onError: (err) => {
            const res = err && err.originalResponse;
            button.disabled = false;
            progress.hidden = true;
            say(status, describe(res ? res.getStatus() : 0,
              res ? parseJson(res.getBody()) : null, null), true);
          },
        });
        upload.findPreviousUploads().then((previous) => {
          if (previous.length > 0) upload.resumeFromPreviousUpload(previous[0]);
          upload.start();
        }, () => upload.start());
        return;
      }
      const xhr = new XMLHttpRequest();
      xhr.open('POST', linkForm.getAttribute('action'));
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.addEventListener('progress', (ev) => {
        if (!ev.lengthComputable) return;
        const pct = Math.floor((ev.loaded / ev.total) * 100);
        bar.value = pct;
        percent.textContent = pct + '%';
      });
      xhr.addEventListener('load', () => {
        button.disabled = false;
        const reply = parseJson(xhr.responseText);
        if (xhr.status === 201 && reply) {
          bar.value = 100;
          percent.textContent = '100%';
          say(status, 'Received ' + reply.name + ' (' + humanSize(reply.size) + '). ' +
            reply.files_left + ' more file' + (reply.files_left === 1 ? '' : 's') +
            ' and ' + humanSize(reply.bytes_left) + ' allowed.', false);
          status.classList.add('received');
          const filesLeft = $('.link-files-left');
          const bytesLeft = $('.link-bytes-left');
          if (filesLeft) filesLeft.textContent = String(reply.files_left);
          if (bytesLeft) bytesLeft.textContent = humanSize(reply.bytes_left);
          linkForm.reset();
          return;
        }
        progress.hidden = true;
        say(status, describe(xhr.status, reply, xhr.getResponseHeader('Retry-After')), true);
      });
      xhr.addEventListener('error', () => {
        button.disabled = false;
        progress.hidden = true;
        say(status, describe(0, null, null), true);
      });
      xhr.send(new FormData(linkForm));
    });
  }

  // ---- Confirm before deleting ----
  document.querySelectorAll('form[data-confirm]').forEach((f) => {
    f.addEventListener('submit', (e) => {
      const ok = window.confirm('Delete “' + f.dataset.confirm + '”? This cannot be undone.');
      if (!ok) e.preventDefault();
    });
  });
}());
