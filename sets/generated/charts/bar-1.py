import matplotlib.pyplot as plt

labels = ["South", "Coast", "Central", "North"]
values = [17, 15, 9, 10]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.bar(labels, values, color="#4C72B0")
ax.set_title("Units sold by region")
ax.set_ylabel("Units")
plt.tight_layout()
plt.show()
