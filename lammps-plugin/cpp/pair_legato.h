/* pair_style legato: a legato (Allegro-Legato) TorchScript model as a LAMMPS pair style.
   Copyright (c) the legato authors. Distributed under the GNU General Public License v2
   (see LICENSE in this folder), since it links LAMMPS. */

#ifndef LMP_PAIR_LEGATO_H
#define LMP_PAIR_LEGATO_H

#include "pair.h"

#include <torch/script.h>

#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairLegato : public Pair {
 public:
  PairLegato(class LAMMPS *);
  ~PairLegato() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 private:
  void allocate();
  void load_model(const std::string &path);
  void evaluate(const double *vec, const int64_t *centre, const int64_t *nspec, const int64_t *cspec,
                int64_t n_edges, int64_t n_centres, double *energy, double *grad);

  torch::jit::Module model;
  bool model_loaded = false;
  torch::Dtype dtype = torch::kFloat64;  // the model's computing dtype
  std::string asserted_dtype;            // from "dtype X" in pair_style, checked against the model
  int nthreads = 0;                      // torch intra-op threads per rank (0 = torch's default)
  int64_t chunk = 8192;                  // max edges per model call (0 = all edges in one call)
  double r_max = 0.0;
  std::vector<std::string> species;      // the model's type names, in species-index order
  std::vector<int64_t> type2species;     // [ntypes + 1] LAMMPS type -> model species
};

}    // namespace LAMMPS_NS

#endif
