// shardquant._core: the public C++ API (include/shardquant/) for Python. The run happens on a
// worker thread with the GIL released; the calling thread wakes every 50 ms to run Python's
// signal handlers (PyErr_CheckSignals), so Ctrl-C sets the cancel flag and the run stops as
// after an error (quantize_options::cancel) before KeyboardInterrupt is raised. C++ errors map
// to the exception classes created here. Owns no quantization logic.
#include <nanobind/nanobind.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include <shardquant/shardquant.h>

namespace nb = nanobind;
using namespace shardquant;

namespace {

PyObject* g_base = nullptr;       // ShardquantError
PyObject* g_input = nullptr;      // InputError (also ValueError)
PyObject* g_io = nullptr;         // IOError (also OSError)
PyObject* g_usage = nullptr;      // UsageError (also ValueError)
PyObject* g_cancelled = nullptr;  // Cancelled

PyObject* new_error(nb::module_& m, const char* name, PyObject* bases, const char* doc) {
  const std::string full = std::string("shardquant._core.") + name;
  PyObject* e = PyErr_NewExceptionWithDoc(full.c_str(), doc, bases, nullptr);
  if (!e) throw nb::python_error();
  m.attr(name) = nb::handle(e);
  return e;
}

// A cancel flag Python code can share with a running quantize() (from any thread).
struct cancel_token {
  std::shared_ptr<std::atomic<bool>> flag = std::make_shared<std::atomic<bool>>(false);
  void cancel() { flag->store(true); }
  [[nodiscard]] bool cancelled() const { return flag->load(); }
};

// Runs `work` on a worker thread while this thread (holding the GIL on entry) checks for Python
// signals; a pending KeyboardInterrupt stores true in `cancel`. Rethrows the worker's exception;
// when a signal handler raised, the Python error is raised instead.
template <class F>
auto run_interruptible(F work, const std::shared_ptr<std::atomic<bool>>& cancel) {
  using result_t = decltype(work());
  std::optional<result_t> result;
  std::exception_ptr error;
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  bool interrupted = false;
  {
    nb::gil_scoped_release release;
    std::thread worker([&] {
      try {
        result.emplace(work());
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard lock(m);
      done = true;
      cv.notify_all();
    });
    std::unique_lock lock(m);
    while (!done) {
      cv.wait_for(lock, std::chrono::milliseconds(50));
      if (done || interrupted) continue;
      lock.unlock();
      {
        nb::gil_scoped_acquire acquire;
        if (PyErr_CheckSignals() != 0) {  // the handler raised (KeyboardInterrupt): keep it
          interrupted = true;
          cancel->store(true);
        }
      }
      lock.lock();
    }
    lock.unlock();
    worker.join();
  }
  if (interrupted) throw nb::python_error();  // the KeyboardInterrupt, after a clean stop
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

struct py_options {
  std::string model_dir, output_dir, scheme, quant_spec, device = "auto", io_engine = "auto";
  std::optional<std::vector<std::string>> exclude;
  std::vector<std::pair<std::string, std::string>> layer_schemes;
  std::vector<std::string> converters;
  std::vector<std::string> skip_side_files;
  uint64_t memory_budget = 0;
  unsigned streams = 0;
  bool overwrite = false, resume = false, keep_excluded_as_original = false;
  std::string report_json;
};

quantize_options to_options(const py_options& p) {
  quantize_options o;
  o.input = p.model_dir;
  o.output = p.output_dir;
  o.scheme = p.scheme;
  o.quant_spec = p.quant_spec;
  o.excludes = p.exclude;
  o.overrides = p.layer_schemes;
  o.converters = p.converters;
  o.skip_side_files = p.skip_side_files;
  o.keep_excluded_original = p.keep_excluded_as_original;
  o.device = p.device;
  o.memory_budget = p.memory_budget;
  o.streams = p.streams;
  o.io_engine = parse_io_engine(p.io_engine);
  if (p.overwrite && p.resume) throw usage_error("overwrite and resume exclude each other");
  o.existing = p.overwrite ? existing_output::overwrite
               : p.resume  ? existing_output::resume
                           : existing_output::fail;
  o.quiet = true;  // Python callers get progress and warnings through callbacks
  o.progress_to_stderr = false;
  o.report_json = p.report_json;
  return o;
}

// A Python callback called from a C++ thread: with the GIL; an exception it raises cancels the
// run and is raised by quantize() afterwards.
struct callback_state {
  std::mutex m;
  std::optional<nb::python_error> error;
};

std::string quantize_py(const py_options& p, nb::object progress, nb::object on_warning,
                        std::optional<cancel_token> token) {
  quantize_options o = to_options(p);
  o.cancel = token ? token->flag : std::make_shared<std::atomic<bool>>(false);
  auto cb = std::make_shared<callback_state>();
  auto guard = [cb, cancel = o.cancel](auto&& call) {
    nb::gil_scoped_acquire acquire;
    try {
      call();
    } catch (nb::python_error& e) {
      std::lock_guard lock(cb->m);
      if (!cb->error) cb->error.emplace(std::move(e));
      cancel->store(true);
    }
  };
  // The callables are held through shared_ptrs: copies of the std::functions (made by the run on
  // its own threads) then never touch a Python reference count without the GIL; the last owner
  // is this frame, which holds the GIL.
  auto progress_fn = std::make_shared<nb::object>(std::move(progress));
  auto warning_fn = std::make_shared<nb::object>(std::move(on_warning));
  if (!progress_fn->is_none())
    o.on_progress = [guard, progress_fn](const progress_sample& s) {
      guard([&] {
        nb::dict d;
        d["bytes_done"] = s.bytes_done;
        d["bytes_total"] = s.bytes_total;
        d["shards_done"] = s.shards_done;
        d["shards_total"] = s.shards_total;
        d["seconds"] = s.seconds;
        d["done"] = s.done;
        (*progress_fn)(d);
      });
    };
  if (!warning_fn->is_none())
    o.on_warning = [guard, warning_fn](const std::string& w) { guard([&] { (*warning_fn)(w); }); };
  std::string json;
  try {
    json = run_interruptible([&] { return quantize_checkpoint(o).to_json(); }, o.cancel);
  } catch (const cancelled_error&) {
    std::lock_guard lock(cb->m);
    if (cb->error) throw std::move(*cb->error);  // the callback's own exception
    throw;
  }
  // A callback that raised on the last sample could not stop the run any more: still its error.
  std::lock_guard lock(cb->m);
  if (cb->error) throw std::move(*cb->error);
  return json;
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "shardquant: file-to-file quantization of LLM safetensors checkpoints";
  g_base = new_error(m, "ShardquantError", PyExc_RuntimeError, "Base of every shardquant error.");
  nb::object input_bases = nb::make_tuple(nb::handle(g_base), nb::handle(PyExc_ValueError));
  g_input = new_error(m, "InputError", input_bases.ptr(),
                      "Bad input: names the file, the tensor and the byte offset.");
  nb::object io_bases = nb::make_tuple(nb::handle(g_base), nb::handle(PyExc_OSError));
  g_io = new_error(m, "IOError", io_bases.ptr(), "A failing system call (open, read, write...).");
  nb::object usage_bases = nb::make_tuple(nb::handle(g_base), nb::handle(PyExc_ValueError));
  g_usage = new_error(m, "UsageError", usage_bases.ptr(), "Bad options.");
  g_cancelled = new_error(m, "Cancelled", g_base, "The run was cancelled; it cleaned up first.");
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const input_error& e) {
      PyErr_SetString(g_input, e.what());
    } catch (const io_error& e) {
      PyErr_SetString(g_io, e.what());
    } catch (const usage_error& e) {
      PyErr_SetString(g_usage, e.what());
    } catch (const cancelled_error& e) {
      PyErr_SetString(g_cancelled, e.what());
    }
  });

  nb::class_<cancel_token>(m, "CancelToken",
                           "Pass to quantize(cancel=...); cancel() from any thread.")
      .def(nb::init<>())
      .def("cancel", &cancel_token::cancel)
      .def_prop_ro("cancelled", &cancel_token::cancelled);

  nb::class_<py_options>(m, "_Options")
      .def(nb::init<>())
      .def_rw("model_dir", &py_options::model_dir)
      .def_rw("output_dir", &py_options::output_dir)
      .def_rw("scheme", &py_options::scheme)
      .def_rw("quant_spec", &py_options::quant_spec)
      .def_rw("device", &py_options::device)
      .def_rw("io_engine", &py_options::io_engine)
      .def_rw("exclude", &py_options::exclude)
      .def_rw("layer_schemes", &py_options::layer_schemes)
      .def_rw("converters", &py_options::converters)
      .def_rw("skip_side_files", &py_options::skip_side_files)
      .def_rw("memory_budget", &py_options::memory_budget)
      .def_rw("streams", &py_options::streams)
      .def_rw("overwrite", &py_options::overwrite)
      .def_rw("resume", &py_options::resume)
      .def_rw("keep_excluded_as_original", &py_options::keep_excluded_as_original)
      .def_rw("report_json", &py_options::report_json);

  m.def("_quantize", &quantize_py, nb::arg("options"), nb::arg("progress").none(),
        nb::arg("on_warning").none(), nb::arg("cancel").none());
  m.def("_plan", [](const py_options& p) {
    quantize_options o = to_options(p);
    return run_interruptible([&] { return plan_checkpoint(o).to_json(); },
                             std::make_shared<std::atomic<bool>>(false));
  });
  m.def("_inspect", [](const std::string& path) {
    nb::gil_scoped_release release;
    return inspect(path);
  });
  m.def("_schemes", [] {
    std::vector<std::pair<std::string, std::string>> r;
    for (const auto& s : schemes()) r.emplace_back(s.name, s.help);
    return r;
  });
  m.def("version", [] { return std::string(version()); });
}
