// The Jupyter widgets page manager (@jupyter-widgets/html-manager 1.x) typesets
// widget labels with MathJax 2's MathJax.Hub.Queue(["Typeset", MathJax.Hub, el]).
// This book loads MathJax 3, which has no Hub, so every widget logged a
// TypeError. When MathJax 3 installs itself, give it a Hub whose Queue hands
// the element to MathJax 3's typesetPromise.
(() => {
  const hub = {
    Queue: (job) => {
      const el = Array.isArray(job) ? job[2] : null;
      const mj = window.MathJax;
      if (el && mj && mj.typesetPromise) mj.typesetPromise([el]).catch(() => {});
    },
  };
  // only MathJax itself (it has a version), never the configuration object
  const withHub = (mj) => {
    if (mj && typeof mj === "object" && mj.version && !mj.Hub) mj.Hub = hub;
    return mj;
  };
  let current = withHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    enumerable: true,
    get: () => current,
    set: (mj) => {
      current = withHub(mj);
    },
  });
})();
