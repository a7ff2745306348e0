/* pair_style legato: a legato (Allegro-Legato) TorchScript model as a LAMMPS pair style.
   Copyright (c) the legato authors. Distributed under the GNU General Public License v2
   (see LICENSE in this folder), since it links LAMMPS.

   Each rank evaluates the energies of its local atoms from edges (i local, j local or
   ghost, |r_j - r_i| < r_max) of a full neighbour list. The model's edge_forward returns
   per-centre energies and dE/d(r_j - r_i); forces go to i and j (ghost forces are summed
   onto their owners by LAMMPS's reverse communication, hence newton pair on). */

#include "pair_legato.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "platform.h"
#include "update.h"
#include "utils.h"

#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/version.h>

#include <cstring>
#include <sstream>

using namespace LAMMPS_NS;

static constexpr int DEPLOY_FORMAT = 1;

static std::string first_line(const char *what)
{
  std::string s(what);
  auto pos = s.find('\n');
  return pos == std::string::npos ? s : s.substr(0, pos);
}

PairLegato::PairLegato(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // the virial is summed from the edges directly
  centroidstressflag = CENTROID_NOTAVAIL;
}

PairLegato::~PairLegato()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairLegato::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

/* pair_style legato [threads N] [dtype float32|float64] [chunk N] */
void PairLegato::settings(int narg, char **arg)
{
  int iarg = 0;
  while (iarg < narg) {
    std::string key = arg[iarg];
    if (iarg + 1 >= narg) error->all(FLERR, "pair_style legato: keyword '{}' needs a value", key);
    std::string value = arg[iarg + 1];
    if (key == "threads") {
      nthreads = utils::inumeric(FLERR, value, false, lmp);
      if (nthreads < 1) error->all(FLERR, "pair_style legato: threads must be >= 1, got {}", value);
    } else if (key == "dtype") {
      if (value != "float32" && value != "float64")
        error->all(FLERR, "pair_style legato: dtype must be float32 or float64, got '{}'", value);
      asserted_dtype = value;
    } else if (key == "chunk") {
      chunk = utils::bnumeric(FLERR, value, false, lmp);
      if (chunk < 0) error->all(FLERR, "pair_style legato: chunk must be >= 0, got {}", value);
    } else {
      error->all(FLERR, "pair_style legato: unknown keyword '{}' (known: threads, dtype, chunk)", key);
    }
    iarg += 2;
  }
  if (nthreads > 0) at::set_num_threads(nthreads);
}

void PairLegato::load_model(const std::string &path)
{
  if (!platform::file_is_readable(path))
    error->all(FLERR, "pair_coeff legato: model file '{}' does not exist or cannot be read", path);
  torch::jit::ExtraFilesMap extra{{"legato_metadata.json", ""}};
  try {
    model = torch::jit::load(path, torch::kCPU, extra);
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_coeff legato: cannot load '{}' as a TorchScript model written by "
               "`legato deploy` ({})", path, first_line(e.what()));
  }
  const std::string &text = extra["legato_metadata.json"];
  if (text.empty())
    error->all(FLERR, "pair_coeff legato: '{}' has no legato metadata; write it with `legato deploy`",
               path);
  int format = 0;
  std::string torch_version, legato_version, dt;
  try {    // a field of the wrong JSON type throws too
    json meta = json::parse(text);
    format = meta.value("format", 0);
    torch_version = meta.value("torch_version", std::string("unknown"));
    legato_version = meta.value("legato_version", std::string("unknown"));
    dt = meta.value("dtype", std::string(""));
    r_max = meta.value("r_max", 0.0);
    species = meta.value("type_names", std::vector<std::string>());
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_coeff legato: '{}' has unreadable legato metadata ({})", path, e.what());
  }
  if (format != DEPLOY_FORMAT)
    error->all(FLERR, "pair_coeff legato: '{}' has deploy format {} (legato {}); this plugin reads "
               "format {}: re-deploy the model with a matching legato", path, format, legato_version,
               DEPLOY_FORMAT);
  std::string runtime = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
  if (torch_version.rfind(runtime + ".", 0) != 0 && torch_version != runtime)
    error->all(FLERR, "pair_coeff legato: '{}' was written by torch {}, but this plugin runs torch {}: "
               "re-deploy the model with torch {}", path, torch_version, TORCH_VERSION, runtime);
  if (!model.find_method("edge_forward"))
    error->all(FLERR, "pair_coeff legato: '{}' has no edge_forward method (legato {}); re-deploy it",
               path, legato_version);
  if (dt == "float32") dtype = torch::kFloat32;
  else if (dt == "float64") dtype = torch::kFloat64;
  else error->all(FLERR, "pair_coeff legato: '{}' has unknown dtype '{}'", path, dt);
  if (!asserted_dtype.empty() && asserted_dtype != dt)
    error->all(FLERR, "pair_style legato dtype {} does not match the model '{}', which computes in {}",
               asserted_dtype, path, dt);
  if (!(r_max > 0.0)) error->all(FLERR, "pair_coeff legato: '{}' has no positive r_max", path);
  if (species.empty()) error->all(FLERR, "pair_coeff legato: '{}' lists no type names", path);
  model.eval();
  model_loaded = true;
  if (comm->me == 0) {
    std::string names;
    for (auto &s : species) names += (names.empty() ? "" : " ") + s;
    utils::logmesg(lmp, "pair_style legato: model {} (legato {}, torch {}, {}, r_max {} A, species {}); "
                   "{} torch thread(s) per rank\n", path, legato_version, torch_version, dt, r_max,
                   names, at::get_num_threads());
  }
}

/* pair_coeff * * MODEL_FILE TYPE1 ... TYPEn */
void PairLegato::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff legato: expected '* * MODEL_FILE' and {} type names, got {} arguments",
               ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff legato: use 'pair_coeff * * MODEL_FILE TYPE1 ... TYPEn'");
  load_model(arg[2]);
  type2species.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++) {
    std::string name = arg[2 + t];
    for (size_t s = 0; s < species.size(); s++)
      if (species[s] == name) type2species[t] = static_cast<int64_t>(s);
    if (type2species[t] < 0) {
      std::string known;
      for (auto &s : species) known += (known.empty() ? "" : ", ") + s;
      error->all(FLERR, "pair_coeff legato: type {} is '{}', which the model does not know (its species: {})",
                 t, name, known);
    }
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairLegato::init_style()
{
  if (!model_loaded) error->all(FLERR, "pair_style legato: no model (pair_coeff * * MODEL_FILE ...)");
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style legato requires newton pair on (ghost forces are reverse-communicated)");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style legato requires units metal (eV, Angstrom), not units {}",
               update->unit_style);
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style legato requires atom IDs");
  torch::jit::setGraphExecutorOptimize(false);    // shapes change every step: no re-profiling
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairLegato::init_one(int, int)
{
  return r_max;
}

/* one model call: n_edges edges of n_centres centres -> energies [n_centres], dE/dvec [n_edges, 3] */
void PairLegato::evaluate(const double *vec, const int64_t *centre, const int64_t *nspec,
                          const int64_t *cspec, int64_t n_edges, int64_t n_centres, double *energy,
                          double *grad)
{
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  // from_blob wants non-const pointers; the copies (clone) never write through them
  torch::Tensor vec_t = torch::from_blob(const_cast<double *>(vec), {n_edges, 3}, f64).to(dtype).clone();
  torch::Tensor centre_t = torch::from_blob(const_cast<int64_t *>(centre), {n_edges}, i64).clone();
  torch::Tensor nspec_t = torch::from_blob(const_cast<int64_t *>(nspec), {n_edges}, i64).clone();
  torch::Tensor cspec_t = torch::from_blob(const_cast<int64_t *>(cspec), {n_centres}, i64).clone();
  torch::Tensor atomic, g;
  try {
    c10::AutoGradMode grad_on(true);    // edge_forward differentiates inside TorchScript
    auto out = model.get_method("edge_forward")({vec_t, centre_t, nspec_t, cspec_t}).toTuple();
    atomic = out->elements()[0].toTensor().to(torch::kFloat64).contiguous();
    g = out->elements()[1].toTensor().to(torch::kFloat64).contiguous();
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style legato: the model failed: {}", first_line(e.what()));
  }
  std::memcpy(energy, atomic.data_ptr<double>(), sizeof(double) * n_centres);
  std::memcpy(grad, g.data_ptr<double>(), sizeof(double) * 3 * n_edges);
}

void PairLegato::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);

  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  int inum = list->inum;
  int *ilist = list->ilist;
  int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const double cut2 = r_max * r_max;

  // edges (centre ii among the list's atoms, neighbour j local or ghost) within r_max
  std::vector<double> vec;                   // [n_edges * 3] r_j - r_i
  std::vector<int64_t> centre, neighbour_species;    // [n_edges]
  std::vector<int> neighbour;                // [n_edges] LAMMPS index of j
  std::vector<int64_t> centre_species(inum);    // [inum]
  for (int ii = 0; ii < inum; ii++) {
    int i = ilist[ii];
    centre_species[ii] = type2species[type[i]];
    int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; jj++) {
      int j = jlist[jj] & NEIGHMASK;
      double d0 = x[j][0] - x[i][0], d1 = x[j][1] - x[i][1], d2 = x[j][2] - x[i][2];
      if (d0 * d0 + d1 * d1 + d2 * d2 >= cut2) continue;
      vec.insert(vec.end(), {d0, d1, d2});
      centre.push_back(ii);
      neighbour_species.push_back(type2species[type[j]]);
      neighbour.push_back(j);
    }
  }
  const int64_t n_edges = static_cast<int64_t>(centre.size());

  // model calls over consecutive centres holding at most `chunk` edges (at least one centre):
  // E_i depends on i's edges only, so every chunk's energies and edge gradients are exact
  std::vector<double> energy(inum, 0.0), grad(3 * n_edges, 0.0);
  std::vector<int64_t> local_centre;
  int64_t e0 = 0, ii0 = 0;
  while (ii0 < inum) {
    int64_t e1 = e0, ii1 = ii0;
    while (ii1 < inum) {
      int64_t e_next = e1;
      while (e_next < n_edges && centre[e_next] == ii1) e_next++;
      if (ii1 > ii0 && chunk > 0 && e_next - e0 > chunk) break;
      e1 = e_next;
      ii1++;
    }
    local_centre.resize(e1 - e0);
    for (int64_t e = e0; e < e1; e++) local_centre[e - e0] = centre[e] - ii0;
    evaluate(vec.data() + 3 * e0, local_centre.data(), neighbour_species.data() + e0,
             centre_species.data() + ii0, e1 - e0, ii1 - ii0, energy.data() + ii0, grad.data() + 3 * e0);
    e0 = e1;
    ii0 = ii1;
  }
  const double *e_ptr = energy.data();
  const double *g = grad.data();

  for (int64_t e = 0; e < n_edges; e++) {
    const int i = ilist[centre[e]], j = neighbour[e];
    const double *ge = g + 3 * e;
    f[i][0] += ge[0];
    f[i][1] += ge[1];
    f[i][2] += ge[2];
    f[j][0] -= ge[0];
    f[j][1] -= ge[1];
    f[j][2] -= ge[2];
    if (vflag_either) {
      const double *r = vec.data() + 3 * e;
      // W = -sum r (x) g, symmetrised off the diagonal: xx yy zz xy xz yz
      double w[6] = {-r[0] * ge[0],
                     -r[1] * ge[1],
                     -r[2] * ge[2],
                     -0.5 * (r[0] * ge[1] + r[1] * ge[0]),
                     -0.5 * (r[0] * ge[2] + r[2] * ge[0]),
                     -0.5 * (r[1] * ge[2] + r[2] * ge[1])};
      if (vflag_global)
        for (int k = 0; k < 6; k++) virial[k] += w[k];
      if (vflag_atom)
        for (int k = 0; k < 6; k++) {
          vatom[i][k] += 0.5 * w[k];
          vatom[j][k] += 0.5 * w[k];
        }
    }
  }
  if (eflag_either)
    for (int ii = 0; ii < inum; ii++) {
      if (eflag_global) eng_vdwl += e_ptr[ii];
      if (eflag_atom) eatom[ilist[ii]] += e_ptr[ii];
    }
}
